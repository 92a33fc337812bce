package minishop

import com.lesfurets.jenkins.unit.BasePipelineTest
import org.junit.Before
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

import static org.assertj.core.api.Assertions.assertThat
import static org.junit.Assert.fail

/**
 * Runs the repository's real Jenkinsfile under JenkinsPipelineUnit 1.1. That release predates
 * declarative pipelines, so each declarative keyword is registered here as a method that records
 * what the Jenkinsfile declares: the stages in order, the steps each one runs (post blocks
 * included) and each stage's `when` condition as a tree, which is then evaluated for a branch the
 * way Jenkins would. Any step the Jenkinsfile calls that is not registered (a typo such as `shh`)
 * fails the run with MissingMethodException, as it would fail on Jenkins.
 */
class JenkinsfileTest extends BasePipelineTest {

    @Rule
    public TemporaryFolder tmp = new TemporaryFolder()

    /** Stage names in the order they are declared. */
    List<String> stageOrder = []
    /** Per stage: the steps run, e.g. "sh pipelines/lint.sh", "post.failure: sh ...". */
    Map<String, List<String>> steps = [:]
    /** Per stage: its `when` conditions, as nested lists (["branch", "main"], ["anyOf", [...]]). */
    Map<String, List> whens = [:]
    /** Per stage: the `input` message asked before it runs. */
    Map<String, String> inputs = [:]
    /** Stages whose `when` is evaluated before their `input` (beforeInput true). */
    List<String> whenBeforeInput = []
    /** Credential ids bound around steps, per stage. */
    Map<String, List<String>> credentials = [:]

    private String stage = '(pipeline)'
    private String section = ''
    /** The `when` condition list being filled, or null outside a `when` block. */
    private List conditions = null

    @Override
    @Before
    void setUp() throws Exception {
        scriptRoots = [System.getProperty('jenkinsfile.dir'), tmp.root.path] as String[]
        scriptExtension = ''
        super.setUp()
        binding.setVariable('none', 'none')
        binding.setVariable('env', [BRANCH_NAME: 'main', APP_DOMAIN: 'minishop.example.test'])

        Closure run = { Closure body -> body.call() }
        ['pipeline', 'agent', 'docker', 'options', 'environment', 'stages'].each { name ->
            helper.registerAllowedMethod(name, [Closure], run)
        }
        helper.registerAllowedMethod('agent', [String], { })
        ['image', 'args', 'label'].each { name -> helper.registerAllowedMethod(name, [String], { }) }
        helper.registerAllowedMethod('timeout', [Map], { })
        helper.registerAllowedMethod('disableConcurrentBuilds', [], { })
        helper.registerAllowedMethod('logRotator', [Map], { Map m -> m })
        helper.registerAllowedMethod('buildDiscarder', [Object], { })

        helper.registerAllowedMethod('stage', [String, Closure], { String name, Closure body ->
            stageOrder << name
            steps[name] = []
            whens[name] = []
            credentials[name] = []
            String outer = stage
            stage = name
            body.call()
            stage = outer
        })
        helper.registerAllowedMethod('steps', [Closure], { Closure body -> inSection('', body) })
        helper.registerAllowedMethod('post', [Closure], run)
        ['always', 'success', 'failure', 'unstable', 'fixed', 'cleanup'].each { condition ->
            helper.registerAllowedMethod(condition, [Closure], { Closure body ->
                inSection("post.${condition}: ", body)
            })
        }

        helper.registerAllowedMethod('when', [Closure], { Closure body ->
            conditions = whens[stage]
            body.call()
            conditions = null
        })
        helper.registerAllowedMethod('beforeAgent', [Boolean], { })
        helper.registerAllowedMethod('beforeInput', [Boolean], { Boolean before ->
            if (before) { whenBeforeInput << stage }
        })
        helper.registerAllowedMethod('branch', [String], { String name -> conditions << ['branch', name] })
        helper.registerAllowedMethod('expression', [Closure], { Closure c -> conditions << ['expression', c] })
        helper.registerAllowedMethod('anyOf', [Closure], { Closure body ->
            List outer = conditions
            List children = []
            conditions = children
            body.call()
            conditions = outer
            conditions << ['anyOf', children]
        })

        helper.registerAllowedMethod('input', [Closure], run)
        helper.registerAllowedMethod('message', [String], { String text -> inputs[stage] = text })
        helper.registerAllowedMethod('ok', [String], { })

        helper.registerAllowedMethod('sh', [String], { String script -> record("sh ${script}") })
        helper.registerAllowedMethod('echo', [String], { String text -> record("echo ${text}") })
        helper.registerAllowedMethod('junit', [String], { String pattern -> record("junit ${pattern}") })
        helper.registerAllowedMethod('recordCoverage', [Map], { Map m ->
            record("recordCoverage ${m.tools*.parser} ${m.tools*.pattern}")
        })
        helper.registerAllowedMethod('archiveArtifacts', [Map], { Map m -> record("archiveArtifacts ${m.artifacts}") })
        helper.registerAllowedMethod('stash', [Map], { Map m -> record("stash ${m.name}") })
        helper.registerAllowedMethod('unstash', [String], { String name -> record("unstash ${name}") })
        ['string', 'file', 'usernamePassword'].each { kind ->
            helper.registerAllowedMethod(kind, [Map], { Map m -> m.credentialsId })
        }
        helper.registerAllowedMethod('withCredentials', [List, Closure], { List ids, Closure body ->
            credentials[stage].addAll(ids*.toString())
            body.call()
        })
    }

    private void inSection(String name, Closure body) {
        String outer = section
        section = name
        body.call()
        section = outer
    }

    private void record(String step) {
        steps.computeIfAbsent(stage) { [] } << "${section}${step}".toString()
    }

    /** Runs the Jenkinsfile as a multibranch job of `branch` would. */
    private void runOn(String branch, Map extraEnv = [:]) {
        binding.setVariable('env', [BRANCH_NAME: branch, APP_DOMAIN: 'minishop.example.test'] + extraEnv)
        runScript('Jenkinsfile')
    }

    /** Evaluates a recorded `when` condition for the branch and environment currently bound. */
    private boolean holds(List condition) {
        switch (condition[0]) {
            case 'branch': return binding.getVariable('env').BRANCH_NAME == condition[1]
            case 'anyOf': return condition[1].any { holds(it as List) }
            case 'expression': return (condition[1] as Closure).call() as boolean
            default: throw new AssertionError("unknown when condition ${condition}")
        }
    }

    /** The stages Jenkins would run on `branch`: all of a stage's `when` conditions must hold. */
    private List<String> stagesRunOn(String branch, Map extraEnv = [:]) {
        runOn(branch, extraEnv)
        return stageOrder.findAll { name -> whens[name].every { holds(it as List) } }
    }

    @Test
    void stagesComeInTheDeliveryOrder() {
        runOn('main')
        assertThat(stageOrder).containsExactly(
            'Lint', 'Test', 'SonarQube', 'Build Image', 'Deploy Staging', 'API Test', 'Load Test',
            'Deploy Prod')
    }

    @Test
    void eachStageCallsItsPipelinesScript() {
        runOn('main')
        assertThat(steps['Lint']).containsExactly('sh pipelines/lint.sh')
        assertThat(steps['Test']).containsExactly(
            'sh pipelines/test.sh', 'stash reports',
            'post.always: junit reports/junit*.xml',
            'post.always: recordCoverage [COBERTURA] [reports/coverage.xml]')
        assertThat(steps['SonarQube']).containsExactly('unstash reports', 'sh pipelines/sonar.sh')
        assertThat(steps['Build Image']).containsExactly('sh pipelines/build-image.sh')
        assertThat(steps['Deploy Staging']).containsExactly('sh pipelines/deploy.sh staging')
        assertThat(steps['API Test']).containsExactly(
            'sh pipelines/api-test.sh https://staging.minishop.example.test',
            'post.failure: sh pipelines/rollback.sh staging')
        assertThat(steps['Load Test']).containsExactly(
            'sh pipelines/loadtest.sh', 'post.always: archiveArtifacts reports/loadtest*')
        assertThat(steps['Deploy Prod']).containsExactly('sh pipelines/deploy.sh prod')
    }

    @Test
    void secretsComeFromCredentials() {
        runOn('main')
        assertThat(credentials['SonarQube']).containsExactly('sonar-token')
        assertThat(credentials['Build Image']).containsExactly('minishop-registry')
        assertThat(credentials['Deploy Staging']).containsExactly('kubeconfig-staging')
        assertThat(credentials['API Test']).containsExactly('kubeconfig-staging')
        assertThat(credentials['Deploy Prod']).containsExactly('kubeconfig-prod')
    }

    @Test
    void devAndTestBranchesDeployToTheirOwnEnvironment() {
        ['dev', 'test'].each { branch ->
            stageOrder.clear()
            runOn(branch)
            assertThat(steps['Deploy Staging']).containsExactly("sh pipelines/deploy.sh ${branch}".toString())
            assertThat(steps['API Test'][0]).isEqualTo(
                "sh pipelines/api-test.sh https://${branch}.minishop.example.test".toString())
        }
    }

    @Test
    void whenGatesStagesByBranch() {
        assertThat(stagesRunOn('feature/cart')).containsExactly('Lint', 'Test', 'Load Test')
        stageOrder.clear()
        assertThat(stagesRunOn('dev')).containsExactly(
            'Lint', 'Test', 'Build Image', 'Deploy Staging', 'API Test', 'Load Test')
        stageOrder.clear()
        assertThat(stagesRunOn('main')).containsExactly(
            'Lint', 'Test', 'Build Image', 'Deploy Staging', 'API Test', 'Load Test', 'Deploy Prod')
        stageOrder.clear()
        assertThat(stagesRunOn('main', [SONAR_HOST_URL: 'https://sonar.example.test'])).contains('SonarQube')
    }

    @Test
    void productionWaitsForAPerson() {
        runOn('main')
        assertThat(inputs.keySet()).containsExactly('Deploy Prod')
        assertThat(whens['Deploy Prod']).containsExactly(['branch', 'main'])
        // Otherwise Jenkins would ask on every branch and only then skip the stage.
        assertThat(whenBeforeInput).containsExactly('Deploy Prod')
    }

    @Test
    void aMisspeltStepFails() {
        String jenkinsfile = new File(System.getProperty('jenkinsfile.dir'), 'Jenkinsfile').text
        String misspelt = jenkinsfile.replace("sh 'pipelines/test.sh'", "shh 'pipelines/test.sh'")
        assertThat(misspelt).isNotEqualTo(jenkinsfile)
        new File(tmp.root, 'Jenkinsfile-shh').text = misspelt
        binding.setVariable('env', [BRANCH_NAME: 'main', APP_DOMAIN: 'minishop.example.test'])
        try {
            runScript('Jenkinsfile-shh')
            fail('a Jenkinsfile calling the unknown step shh ran')
        } catch (MissingMethodException e) {
            assertThat(e.method).isEqualTo('shh')
        }
    }
}
