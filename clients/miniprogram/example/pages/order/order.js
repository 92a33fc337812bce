// One order: pay it (POST /pay, then wx.requestPayment), then wait for WeChat Pay's notification
// to mark it paid on the server; the phone's "ok" alone does not prove payment.
const { shop } = getApp()

Page({
  data: { order: null, paying: false },

  onLoad(query) {
    this.orderNo = query.no
    this.reload()
  },

  reload() {
    return shop.orders.get(this.orderNo).then((order) => this.setData({ order }))
  },

  pay() {
    this.setData({ paying: true })
    shop.orders
      .pay(this.orderNo)
      .then(() => this.waitUntilPaid(10))
      .catch((error) => {
        // -1: wx.requestPayment failed or the user cancelled; the order stays payable.
        wx.showToast({ title: error.code === -1 ? 'Payment not completed' : error.message, icon: 'none' })
      })
      .then(() => this.setData({ paying: false }))
  },

  waitUntilPaid(triesLeft) {
    return this.reload().then(() => {
      if (this.data.order.status !== 'pending_payment' || triesLeft === 0) return undefined
      return new Promise((resolve) => setTimeout(resolve, 1000)).then(() => this.waitUntilPaid(triesLeft - 1))
    })
  },

  cancel() {
    shop.orders.cancel(this.orderNo).then((order) => this.setData({ order }))
  },
})
