#!/usr/bin/env bash
# Resolves ci/jenkins-test (the JenkinsPipelineUnit test of the Jenkinsfile) into ~/.m2 with one
# online Maven run, so that tests/platform/test_jenkinsfile.py can run `mvn -o test` offline.
# Nothing is done when that pom.xml has been resolved before (a marker in ~/.m2 named after its
# hash). Needs Maven and a JDK (pipelines/install-system-deps.sh test).
set -euo pipefail
cd "$(dirname "$0")/.."

project=ci/jenkins-test
repository=${MAVEN_REPOSITORY:-$HOME/.m2/repository}
marker=$repository/.minishop-jenkins-test-$(sha256sum "$project/pom.xml" | cut -c1-16)

[[ -f $marker ]] && exit 0
echo "build-jenkins-test: resolving $project into $repository"
# `test` rather than dependency:go-offline: surefire picks its JUnit provider only when it runs.
mvn -B -q -f "$project/pom.xml" -Dmaven.repo.local="$repository" test
mkdir -p "$repository"
touch "$marker"
