// Types for minishop.js (docs/api.md is the contract; fields are the server's own names).

/** The subset of the mini-program `wx` object the client uses. */
export interface Wx {
  request(options: {
    url: string
    method?: string
    data?: string
    header?: Record<string, string>
    dataType?: string
    success(res: { statusCode: number; data: unknown; header: Record<string, string> }): void
    fail(error: { errMsg: string }): void
  }): unknown
  uploadFile(options: {
    url: string
    filePath: string
    name: string
    formData?: Record<string, string>
    header?: Record<string, string>
    success(res: { statusCode: number; data: string; header?: Record<string, string> }): void
    fail(error: { errMsg: string }): void
  }): unknown
  login(options: { success(res: { code: string }): void; fail(error: { errMsg: string }): void }): void
  requestPayment(options: PaymentParams & { success(res: { errMsg: string }): void; fail(error: { errMsg: string }): void }): void
  setStorageSync(key: string, value: unknown): void
  getStorageSync(key: string): any
  removeStorageSync(key: string): void
}

/**
 * A failure: `code` is the envelope's code (e.g. 40400, 40902, 42900), `0` for a network error
 * and `-1` for a wx API that failed (wx.login, wx.requestPayment, e.g. the user cancelled).
 */
export class ShopError extends Error {
  code: number
  message: string
  requestId: string | null
  status: number
  /** The purchase attempt's key: pass it back to orders.create to retry the same attempt. */
  idempotencyKey: string | null
}

export interface User {
  id: number
  nickname: string
  avatar_url: string
  phone: string | null
  role: string
  created_at: string
}

export interface Session {
  access_token: string
  refresh_token: string
  sign_key: string
  user: User
}

export interface Page<T> {
  items: T[]
  page: number
  page_size: number
  total: number
}

export interface Product {
  id: number
  category_id: number
  title: string
  price_fen: number
  stock: number
  [field: string]: unknown
}

export interface OrderItem {
  product_id: number
  quantity: number
  [field: string]: unknown
}

export type OrderStatus = 'pending_payment' | 'paid' | 'shipped' | 'completed' | 'cancelled'

export interface Order {
  order_no: string
  status: OrderStatus
  total_fen: number
  remark: string
  items: OrderItem[]
  created_at: string
  expires_at: string
  paid_at: string | null
  shipped_at: string | null
  completed_at: string | null
  [field: string]: unknown
}

/** What POST /orders/{no}/pay answers: exactly what wx.requestPayment takes. */
export interface PaymentParams {
  timeStamp: string
  nonceStr: string
  package: string
  signType: 'RSA'
  paySign: string
}

export interface UploadedFile {
  key: string
  url: string
  expires_at: string
}

export interface RequestOptions {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  path: string
  query?: Record<string, string | number | boolean | undefined | null>
  json?: unknown
  auth?: boolean
  sign?: boolean
  idempotencyKey?: string
}

export interface ShopOptions {
  baseUrl: string
  wx: Wx
  /** wx storage key of the session (tokens, sign_key, user). Default 'minishop.session'. */
  storageKey?: string
  /** Retries on 429 (after Retry-After) and, for GETs only, on network errors. Default 3. */
  maxRetries?: number
  networkRetryDelayMs?: number
  sleep?: (ms: number) => Promise<void>
}

export interface Shop {
  login(): Promise<User>
  logout(): Promise<void>
  refresh(): Promise<void>
  isLoggedIn(): boolean
  session(): Session | null
  request<T = unknown>(options: RequestOptions): Promise<T>
  newIdempotencyKey(): string
  products: {
    list(query?: { category_id?: number; q?: string; page?: number; page_size?: number }): Promise<Page<Product>>
    get(id: number): Promise<Product>
  }
  categories: {
    list(query?: { page?: number; page_size?: number }): Promise<Page<{ id: number; name: string; sort: number }>>
  }
  orders: {
    create(
      items: { product_id: number; quantity: number }[],
      options?: { remark?: string; idempotencyKey?: string },
    ): Promise<Order>
    list(query?: { status?: OrderStatus; page?: number; page_size?: number }): Promise<Page<Order>>
    get(orderNo: string): Promise<Order>
    cancel(orderNo: string): Promise<Order>
    confirm(orderNo: string): Promise<Order>
    /** POST /orders/{no}/pay, then wx.requestPayment with its answer. */
    pay(orderNo: string): Promise<{ params: PaymentParams; result: { errMsg: string } }>
  }
  files: {
    upload(filePath: string, options?: { name?: string; formData?: Record<string, string> }): Promise<UploadedFile>
  }
  users: {
    me(): Promise<User>
    updateProfile(profile: { nickname?: string; avatar_url?: string }): Promise<User>
    bindPhone(code: string): Promise<User>
  }
}

export function createShop(options: ShopOptions): Shop
export function newIdempotencyKey(): string
