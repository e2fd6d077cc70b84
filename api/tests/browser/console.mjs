// Drives Debian's chromium through paycenter's console for api/tests/console.rs. Usage:
// node console.mjs <scenario> <json>; the result is one JSON line on stdout.
import { chromium } from "playwright-core";

const [scenario, inputText] = process.argv.slice(2);
const input = JSON.parse(inputText);

const browser = await chromium.launch({
  executablePath: process.env.PAYCENTER_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

function shot(page, name) {
  return page.screenshot({ path: `${input.out_dir}/${name}.png`, fullPage: true });
}

const text = (page, selector) => page.locator(selector).innerText();

// A desktop page, signed in as input.email (English unless input.locale says otherwise).
async function signedIn(options = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale: options.locale || "en-US",
    extraHTTPHeaders: { "Accept-Language": options.accept_language || "en-US,en;q=0.9" },
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  await page.goto(`${input.base}/console`);
  if (options.shot) await shot(page, options.shot);
  await page.fill("#email", options.email || input.email);
  await page.fill("#password", options.password || input.password);
  await Promise.all([page.waitForNavigation(), page.click("#sign-in")]);
  return { page, consoleErrors };
}

// Submits a form built inside the page (what a crafted request carries: the session cookie),
// with or without the session's CSRF token; the page's script-free policy allows forms only.
async function postFromPage(page, path, fields, withToken) {
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.evaluate(({ path, fields, withToken }) => {
      const form = document.createElement("form");
      form.method = "post";
      form.action = path;
      const token = document.querySelector("input[name=_csrf]").value;
      for (const [name, value] of Object.entries(withToken ? { ...fields, _csrf: token } : fields)) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.appendChild(input);
      }
      document.body.appendChild(form);
      form.submit();
    }, { path, fields, withToken }),
  ]);
  return { status: response.status(), body: await page.locator("body").innerText() };
}

const scenarios = {
  // Signs in, onboards a merchant, activates a sandbox account, registers an app.
  async onboard() {
    const { page, consoleErrors } = await signedIn({ shot: "console-sign-in" });
    const signedInAs = await text(page, "#me");
    await page.goto(`${input.base}/console/merchants`);
    await page.fill("#merchant-name", input.merchant_name);
    await Promise.all([page.waitForNavigation(), page.click("#create-merchant button")]);
    const merchantId = await text(page, "#merchant-id");
    const form = page.locator("#activate-sandbox");
    await form.locator("input[name=param_signing_secret]").fill(input.signing_secret);
    await form.locator("input[name=fee_rate]").fill("0.006");
    await Promise.all([page.waitForNavigation(), form.locator("button").click()]);
    const accounts = await page.locator("#accounts tbody tr").allInnerTexts();
    // Routing: the account as the merchant's only rule.
    const accountId = (await page.locator("#accounts tbody tr td code").first().innerText()).trim();
    await page.fill("#routing-rules", JSON.stringify([{ channel_account_ids: [accountId] }]));
    await Promise.all([page.waitForNavigation(), page.click("#routing-form button")]);
    const routing = JSON.parse(await page.locator("#routing-rules").inputValue());
    await shot(page, "console-merchant");
    await page.goto(`${input.base}/console/apps`);
    await page.fill("#app-name", input.app_name);
    await page.selectOption("#app-merchants", [merchantId]);
    await page.fill("#app-notify-url", input.notify_url);
    await Promise.all([page.waitForNavigation(), page.click("#register-app button")]);
    await shot(page, "console-app-secrets");
    const result = {
      signed_in_as: signedInAs,
      merchant_id: merchantId,
      accounts,
      routing,
      app_id: await text(page, "#app-id"),
      api_key: await text(page, "#api-key"),
      webhook_secret: await text(page, "#webhook-secret"),
      console_errors: consoleErrors,
    };
    // The secrets are not shown again: the list has the app, not its key.
    await page.goto(`${input.base}/console/apps`);
    result.apps_page_shows_key = (await page.content()).includes(result.api_key);
    return result;
  },

  // Finds a payment by its order number, refunds part of it, reads the timeline.
  async refund() {
    const { page, consoleErrors } = await signedIn({});
    await page.fill("#q", input.order_no);
    await page.selectOption("#search-merchant", input.merchant_id);
    await Promise.all([page.waitForNavigation(), page.click("#search-button")]);
    const found = { url: page.url(), trade_no: await text(page, "#trade-no"), status: await text(page, "#payment-status") };
    await page.fill("#refund-no", input.refund_no);
    await page.fill("#refund-amount", input.refund_amount);
    await page.fill("#refund-reason", "customer asked");
    await Promise.all([page.waitForNavigation(), page.click("#refund-button")]);
    const requested = await text(page, "#refund-requested");
    const refunds = await page.locator("#refunds tbody tr").allInnerTexts();
    const shares = await page.locator("#shares tbody tr").allInnerTexts();
    const timeline = await page.locator("#timeline li.event").evaluateAll((items) =>
      items.map((item) => ({
        type: item.dataset.type,
        actor: item.querySelector(".actor")?.innerText || null,
      })));
    await shot(page, "console-payment-timeline");
    // A form without its CSRF token is refused, and nothing is refunded (the browser logs the
    // 403 it was meant to get: errors are counted before it).
    const errorsBefore = consoleErrors.length;
    const noToken = await postFromPage(page, `/console/payments/${found.trade_no}/refunds`,
      { refund_no: "csrf-1", amount: "0.01" }, false);
    // Balances as of now, folded afresh from the log.
    await page.goto(`${input.base}/console/audit`);
    await page.selectOption("#audit-merchant", input.merchant_id);
    await page.fill("#audit-at", new Date().toISOString());
    await Promise.all([page.waitForNavigation(), page.click("#audit-button")]);
    const audit = await page.locator("#audit-balances tbody tr").allInnerTexts();
    await shot(page, "console-audit");
    // The app's webhooks, and one delivered again.
    await page.goto(`${input.base}/console/notifications`);
    const notifications = await page.locator("#notifications tbody tr").allInnerTexts();
    let redelivered = false;
    const redeliver = page.locator("#notifications form button").first();
    if (await redeliver.count() > 0) {
      await Promise.all([page.waitForNavigation(), redeliver.click()]);
      redelivered = (await page.locator("#redelivered").count()) > 0;
    }
    await shot(page, "console-notifications");
    // The merchant's split receivers.
    await page.goto(`${input.base}/console/merchants/${input.merchant_id}`);
    const receivers = await page.locator("#receivers tbody tr").allInnerTexts();
    // The merchant's payouts, found by the merchant.
    await page.goto(`${input.base}/console/payouts`);
    await page.fill("#payout-search input[name=merchant_id]", input.merchant_id);
    await Promise.all([page.waitForNavigation(), page.click("#payout-search-button")]);
    const payouts = await page.locator("#payouts tbody tr").allInnerTexts();
    await shot(page, "console-payouts");
    await page.goto(`${input.base}/console/payouts?merchant_id=${input.merchant_id}&lang=zh`);
    const payoutsZh = { heading: await text(page, "h1"), rows: await page.locator("#payouts tbody tr").count() };
    await shot(page, "console-payouts-zh");
    // The trail shows who did what.
    await page.goto(`${input.base}/console/trail`);
    const trail = await page.locator("#trail tbody tr").allInnerTexts();
    await shot(page, "console-trail");
    // Chinese.
    await page.goto(`${input.base}/console/payments/${found.trade_no}?lang=zh`);
    const chinese = { lang: await page.getAttribute("html", "lang"), heading: await text(page, "h1") };
    await shot(page, "console-payment-zh");
    const unexpected = consoleErrors.slice(0, errorsBefore);
    return { found, requested, refunds, shares, receivers, payouts, payouts_zh: payoutsZh, timeline, no_token: noToken, audit, notifications, redelivered, trail, chinese, console_errors: unexpected };
  },

  // Projections: the read model and the balances listed; the balances rebuilt online.
  async projections() {
    const { page, consoleErrors } = await signedIn({});
    await page.goto(`${input.base}/console/projections`);
    const rows = await page.locator("#projections tbody tr").allInnerTexts();
    const rebuild = page.locator("#projections tbody tr", { hasText: "balances" }).locator("form button");
    await Promise.all([page.waitForNavigation(), rebuild.click()]);
    const started = await text(page, ".notice");
    await shot(page, "console-projections");
    return { rows, started, console_errors: consoleErrors };
  },

  // Alerts: a webhook destination added, tested, listed.
  async alerts() {
    const { page, consoleErrors } = await signedIn({});
    await page.goto(`${input.base}/console/alerts`);
    await page.selectOption("#alert-kind", "webhook");
    await page.fill("#alert-url", input.hook_url);
    await page.fill("#add-alert-channel input[name=secret]", "console-alert-secret-0123");
    await Promise.all([page.waitForNavigation(), page.click("#add-alert-channel button")]);
    const added = await text(page, "#done");
    await Promise.all([page.waitForNavigation(), page.locator("#alert-channels form button").first().click()]);
    const tested = await text(page, "#done");
    const channels = await page.locator("#alert-channels tbody tr").allInnerTexts();
    await shot(page, "console-alerts");
    return { added, tested, channels, console_errors: consoleErrors };
  },

  // A viewer sees the payment, has no refund form, and a crafted refund is refused by the server.
  async viewer() {
    const { page, consoleErrors } = await signedIn({});
    await page.goto(`${input.base}/console/payments/${input.trade_no}`);
    const hasRefundForm = (await page.locator("#refund-form").count()) > 0;
    const crafted = await postFromPage(page, `/console/payments/${input.trade_no}/refunds`,
      { refund_no: "viewer-1", amount: "0.01" }, true);
    await page.goto(`${input.base}/console/merchants`);
    const canOnboard = (await page.locator("#create-merchant").count()) > 0;
    await Promise.all([page.waitForNavigation(), page.click("#sign-out")]);
    const afterSignOut = page.url();
    await page.goto(`${input.base}/console/payments`);
    return { has_refund_form: hasRefundForm, crafted, can_onboard: canOnboard, after_sign_out: afterSignOut, after_sign_out_visit: page.url(), console_errors: consoleErrors };
  },
};

try {
  const result = await scenarios[scenario]();
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await browser.close();
}
