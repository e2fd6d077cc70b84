// paycenter's cashier: while the payment is pending, ask for its status every two seconds and
// show the result page once it settles; on a result page, go back to the app after a moment.
(function () {
  "use strict";
  var cashier = document.getElementById("cashier");
  if (!cashier) { return; }
  // A channel that takes a form post: post it at once (the button stays for no-script).
  var channelForm = document.querySelector("form[data-autosubmit]");
  if (channelForm) { channelForm.submit(); return; }
  // Inside WeChat: hand the JSAPI parameters to WeChat's own bridge, then follow the attempt.
  var wechatPay = document.getElementById("wechat-pay");
  if (wechatPay) {
    var pay = function () {
      if (typeof WeixinJSBridge === "undefined") { return; }
      WeixinJSBridge.invoke("getBrandWCPayRequest", JSON.parse(wechatPay.getAttribute("data-jsapi")),
        function () { window.location.assign(wechatPay.getAttribute("data-next")); });
    };
    wechatPay.addEventListener("click", pay);
    document.addEventListener("WeixinJSBridgeReady", pay);
    pay();
    return;
  }
  var returnTo = cashier.getAttribute("data-return-to");
  var view = cashier.getAttribute("data-view");
  if (returnTo && view !== "pending") {
    window.setTimeout(function () { window.location.assign(returnTo); }, 3000);
    return;
  }
  var statusUrl = cashier.getAttribute("data-status-url");
  var shown = cashier.getAttribute("data-status");
  if (!statusUrl || view !== "pending") { return; }
  var polls = 0;
  function poll() {
    polls += 1;
    // At most an hour of polling: a page left open does not ask forever.
    if (polls > 1800) { return; }
    fetch(statusUrl, { cache: "no-store", credentials: "omit" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (body && body.status && body.status !== shown) { window.location.reload(); return; }
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 4000); });
  }
  window.setTimeout(poll, 1000);
})();
