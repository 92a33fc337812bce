// The mini-program's entry: one client for every page. `minishop` is the clients/miniprogram
// folder copied into the project (minishop.js, request-signature.js, minishop.d.ts).
const { createShop } = require('./minishop/minishop')

App({
  shop: createShop({ baseUrl: 'https://shop.example.com', wx }),

  onLaunch() {
    // wx.login needs no tap: log in silently when the session is not stored yet.
    if (!this.shop.isLoggedIn()) this.shop.login().catch((error) => console.error(error))
  },
})
