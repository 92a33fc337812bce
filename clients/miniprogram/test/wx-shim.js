// A `wx` for Node: the mini-program APIs the client uses, doing real HTTP with fetch against the
// backend (BASE_URL) and the WeChat emulator (EMULATOR_URL). It records every request so tests
// can count refreshes and 429s.

const fs = require('node:fs')
const path = require('node:path')

const EMULATOR_URL = process.env.EMULATOR_URL

async function emulator(method, route, body) {
  const response = await fetch(EMULATOR_URL + '/__emulator' + route, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const data = await response.json()
  if (!response.ok) throw new Error(`emulator ${route}: ${response.status} ${JSON.stringify(data)}`)
  return data
}

function answer(response, text) {
  return { statusCode: response.status, data: text, header: Object.fromEntries(response.headers.entries()) }
}

function createWx({ openid } = {}) {
  const storage = new Map()
  const calls = []
  const payments = []
  const wx = {
    calls,
    payments,
    request({ url, method = 'GET', data, header = {}, success, fail }) {
      const entry = { url, method, status: null, idempotencyKey: header['Idempotency-Key'] }
      calls.push(entry)
      fetch(url, { method, headers: header, body: data })
        .then(async (response) => {
          entry.status = response.status
          success(answer(response, await response.text()))
        })
        .catch((error) => fail({ errMsg: 'request:fail ' + error.message }))
    },
    uploadFile({ url, filePath, name, formData = {}, header = {}, success, fail }) {
      const form = new FormData()
      for (const [key, value] of Object.entries(formData)) form.append(key, value)
      form.append(name, new Blob([fs.readFileSync(filePath)]), path.basename(filePath))
      const entry = { url, method: 'POST', status: null }
      calls.push(entry)
      fetch(url, { method: 'POST', headers: header, body: form })
        .then(async (response) => {
          entry.status = response.status
          success(answer(response, await response.text()))
        })
        .catch((error) => fail({ errMsg: 'uploadFile:fail ' + error.message }))
    },
    login({ success, fail }) {
      // One phone, one WeChat user: every wx.login after the first is the same openid.
      emulator('POST', '/codes', openid ? { openid } : {}).then(
        (data) => {
          openid = data.openid
          success({ code: data.code, errMsg: 'login:ok' })
        },
        (error) => fail({ errMsg: 'login:fail ' + error.message }),
      )
    },
    // What the phone checks before it shows the cashier: the emulator verifies paySign and the
    // prepay_id; the test then pays with the emulator's /succeed.
    requestPayment({ timeStamp, nonceStr, package: pkg, signType, paySign, success, fail }) {
      emulator('POST', '/pay/request-payment', { timeStamp, nonceStr, package: pkg, signType, paySign }).then(
        (checked) => {
          payments.push(checked)
          success({ errMsg: 'requestPayment:ok' })
        },
        (error) => fail({ errMsg: 'requestPayment:fail ' + error.message }),
      )
    },
    setStorageSync: (key, value) => storage.set(key, JSON.parse(JSON.stringify(value))),
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    removeStorageSync: (key) => storage.delete(key),
  }
  return wx
}

module.exports = { createWx, emulator }
