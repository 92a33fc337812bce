// MiniShop request client for the mini-program: login, silent token refresh, request signatures,
// envelope unwrapping, retries and payment over wx.request / wx.login / wx.uploadFile /
// wx.requestPayment. CommonJS and dependency-free: copy this folder into the mini-program.
//
//   const { createShop } = require('./minishop/minishop')
//   const shop = createShop({ baseUrl: 'https://shop.example.com', wx })
//   const order = await shop.orders.create([{ product_id: 1, quantity: 2 }])
//   await shop.orders.pay(order.order_no)
//
// The contract is docs/api.md; signatures follow docs/request-signature.md.

const { signedHeaders } = require('./request-signature')

const API = '/api/v1'
const TOKEN_EXPIRED = 40101
const NOT_AUTHENTICATED = 40100
const NETWORK_ERROR = 0
const WX_ERROR = -1

/** An API failure: the envelope's code and message, and the request_id to quote to support. */
class ShopError extends Error {
  constructor({ code, message, requestId = null, status = 0, idempotencyKey = null }) {
    super(message)
    this.name = 'ShopError'
    this.code = code
    this.requestId = requestId
    this.status = status
    this.idempotencyKey = idempotencyKey
  }
}

function headerValue(headers, name) {
  const wanted = name.toLowerCase()
  for (const key of Object.keys(headers || {})) {
    if (key.toLowerCase() === wanted) return headers[key]
  }
  return undefined
}

function queryString(query) {
  if (!query) return ''
  return Object.keys(query)
    .filter((name) => query[name] !== undefined && query[name] !== null)
    .map((name) => encodeURIComponent(name) + '=' + encodeURIComponent(String(query[name])))
    .join('&')
}

/** 32 random alphanumerics: the key of one purchase attempt, reused when it is retried. */
function newIdempotencyKey() {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  let key = Date.now().toString(36)
  while (key.length < 32) key += chars[Math.floor(Math.random() * chars.length)]
  return key
}

function parseBody(data) {
  if (typeof data !== 'string') return data
  try {
    return JSON.parse(data)
  } catch (error) {
    return null
  }
}

/** wx.* callback API as a promise. */
function call(wx, name, options) {
  return new Promise((resolve, reject) => {
    wx[name]({ ...options, success: resolve, fail: reject })
  })
}

function createShop({
  baseUrl,
  wx,
  storageKey = 'minishop.session',
  maxRetries = 3,
  networkRetryDelayMs = 500,
  sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}) {
  const root = baseUrl.replace(/\/+$/, '')
  let session = wx.getStorageSync(storageKey) || null
  let refreshing = null
  let loggingIn = null

  function save(next) {
    session = next
    if (next) wx.setStorageSync(storageKey, next)
    else wx.removeStorageSync(storageKey)
  }

  // One raw exchange: resolves {status, envelope, headers} or rejects with a network ShopError.
  function exchange({ method, path, query, body, headers, upload }) {
    const qs = queryString(query)
    const url = root + path + (qs ? '?' + qs : '')
    const done = (res) => ({
      status: res.statusCode,
      envelope: parseBody(res.data),
      headers: res.header || {},
    })
    const failed = (error) => {
      throw new ShopError({ code: NETWORK_ERROR, message: (error && error.errMsg) || String(error) })
    }
    if (upload) {
      return call(wx, 'uploadFile', {
        url,
        filePath: upload.filePath,
        name: upload.name,
        formData: upload.formData,
        header: headers,
      }).then(done, failed)
    }
    return call(wx, 'request', { url, method, data: body, header: headers, dataType: 'text' }).then(done, failed)
  }

  // Sends one API call with every retry rule; resolves `data` or rejects with a ShopError.
  async function send({ method, path, query, json, auth = false, sign = false, idempotencyKey, upload }) {
    const body = json === undefined ? '' : JSON.stringify(json)
    let attempt = 0
    let replayedAfterAuth = false
    for (;;) {
      if (auth) {
        if (refreshing) await refreshing.catch(() => undefined)
        if (!session) await login()
      }
      const used = session
      const headers = {}
      if (body) headers['Content-Type'] = 'application/json'
      if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey
      if (auth) headers.Authorization = 'Bearer ' + used.access_token
      if (sign) Object.assign(headers, signedHeaders(method, path, queryString(query), body, used.sign_key))

      let answer
      try {
        answer = await exchange({ method, path, query, body: body || undefined, headers, upload })
      } catch (error) {
        if (method === 'GET' && attempt < maxRetries) {
          attempt += 1
          await sleep(networkRetryDelayMs * attempt)
          continue
        }
        error.idempotencyKey = idempotencyKey || null
        throw error
      }
      const envelope = answer.envelope || {}
      if (answer.status === 429 && attempt < maxRetries) {
        attempt += 1
        const seconds = Number(headerValue(answer.headers, 'Retry-After'))
        await sleep((Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000)
        continue
      }
      if (auth && answer.status === 401 && !replayedAfterAuth) {
        if (envelope.code === TOKEN_EXPIRED) {
          replayedAfterAuth = true
          // Another request may have refreshed already: replay with the new token at once.
          if (session === used) await refresh().catch(() => relogin())
          continue
        }
        if (envelope.code === NOT_AUTHENTICATED) {
          replayedAfterAuth = true
          if (session === used) await relogin()
          continue
        }
      }
      if (answer.status >= 200 && answer.status < 300 && envelope.code === 0) return envelope.data
      throw new ShopError({
        code: typeof envelope.code === 'number' ? envelope.code : answer.status,
        message: envelope.message || 'HTTP ' + answer.status,
        requestId: envelope.request_id || headerValue(answer.headers, 'X-Request-ID') || null,
        status: answer.status,
        idempotencyKey: idempotencyKey || null,
      })
    }
  }

  /** wx.login → /auth/login; concurrent callers share one login. */
  function login() {
    if (!loggingIn) {
      loggingIn = (async () => {
        let code
        try {
          code = (await call(wx, 'login', {})).code
        } catch (error) {
          throw new ShopError({ code: WX_ERROR, message: (error && error.errMsg) || 'wx.login failed' })
        }
        const data = await send({ method: 'POST', path: API + '/auth/login', json: { code } })
        save({
          access_token: data.access_token,
          refresh_token: data.refresh_token,
          sign_key: data.sign_key,
          user: data.user,
        })
        return data.user
      })().finally(() => {
        loggingIn = null
      })
    }
    return loggingIn
  }

  /** Rotates the token pair; one refresh in flight, every caller awaits the same one. */
  function refresh() {
    if (!refreshing) {
      const current = session
      refreshing = send({
        method: 'POST',
        path: API + '/auth/refresh',
        json: { refresh_token: current.refresh_token },
      })
        .then((pair) => {
          save({ ...current, access_token: pair.access_token, refresh_token: pair.refresh_token })
        })
        .finally(() => {
          refreshing = null
        })
    }
    return refreshing
  }

  // A refresh that failed (revoked, expired) sends the user back through wx.login.
  function relogin() {
    save(null)
    return login()
  }

  async function logout() {
    if (session) {
      await send({ method: 'POST', path: API + '/auth/logout', auth: true, sign: true }).catch(() => undefined)
    }
    save(null)
  }

  async function pay(orderNo) {
    const params = await send({
      method: 'POST',
      path: API + '/orders/' + encodeURIComponent(orderNo) + '/pay',
      auth: true,
      sign: true,
    })
    try {
      const result = await call(wx, 'requestPayment', params)
      return { params, result }
    } catch (error) {
      throw new ShopError({ code: WX_ERROR, message: (error && error.errMsg) || 'wx.requestPayment failed' })
    }
  }

  const orderPath = (orderNo, action) =>
    API + '/orders/' + encodeURIComponent(orderNo) + (action ? '/' + action : '')

  return {
    login,
    logout,
    refresh,
    isLoggedIn: () => Boolean(session),
    session: () => session,
    request: send,
    newIdempotencyKey,
    products: {
      list: (query) => send({ method: 'GET', path: API + '/products', query }),
      get: (id) => send({ method: 'GET', path: API + '/products/' + encodeURIComponent(id) }),
    },
    categories: {
      list: (query) => send({ method: 'GET', path: API + '/categories', query }),
    },
    orders: {
      // Pass the failed attempt's error.idempotencyKey back as options.idempotencyKey to retry it.
      create: (items, { remark, idempotencyKey } = {}) =>
        send({
          method: 'POST',
          path: API + '/orders',
          json: remark === undefined ? { items } : { items, remark },
          auth: true,
          sign: true,
          idempotencyKey: idempotencyKey || newIdempotencyKey(),
        }),
      list: (query) => send({ method: 'GET', path: API + '/orders', query, auth: true }),
      get: (orderNo) => send({ method: 'GET', path: orderPath(orderNo), auth: true }),
      cancel: (orderNo) => send({ method: 'POST', path: orderPath(orderNo, 'cancel'), auth: true, sign: true }),
      confirm: (orderNo) => send({ method: 'POST', path: orderPath(orderNo, 'confirm'), auth: true, sign: true }),
      pay,
    },
    files: {
      upload: (filePath, { name = 'file', formData } = {}) =>
        send({ method: 'POST', path: API + '/files', auth: true, upload: { filePath, name, formData } }),
    },
    users: {
      me: () => send({ method: 'GET', path: API + '/users/me', auth: true }),
      updateProfile: (profile) => send({ method: 'PATCH', path: API + '/users/me', json: profile, auth: true, sign: true }),
      bindPhone: (code) => send({ method: 'POST', path: API + '/users/me/phone', json: { code }, auth: true, sign: true }),
    },
  }
}

module.exports = { createShop, ShopError, newIdempotencyKey }
