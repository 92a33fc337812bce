// Browse: the on-sale products; tapping "Buy" places the order and opens its page.
const { shop } = getApp()

Page({
  data: { products: [], error: '' },

  onLoad() {
    shop.products
      .list({ page: 1, page_size: 20 })
      .then((page) => this.setData({ products: page.items }))
      .catch((error) => this.setData({ error: error.message }))
  },

  buy(event) {
    const productId = Number(event.currentTarget.dataset.id)
    shop.orders
      .create([{ product_id: productId, quantity: 1 }])
      .then((order) => wx.navigateTo({ url: '/pages/order/order?no=' + order.order_no }))
      .catch((error) => {
        // 40901: short stock. The attempt's error.idempotencyKey retries the same purchase.
        wx.showToast({ title: error.code === 40901 ? 'Sold out' : error.message, icon: 'none' })
      })
  },
})
