// Drives Debian's chromium (never a downloaded browser) through paycenter's cashier for
// api/tests/cashier.rs and api/tests/channels.rs. Usage: node cashier.mjs <scenario> <json>,
// where <json> holds the scenario's inputs; the result is one JSON line on stdout.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";

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

async function newPage(options) {
  const context = await browser.newContext({
    viewport: options.viewport || { width: 420, height: 800 },
    locale: options.locale || "en-US",
    extraHTTPHeaders: options.accept_language ? { "Accept-Language": options.accept_language } : {},
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  return { page, consoleErrors };
}

const text = (page, selector) => page.locator(selector).innerText();

const scenarios = {
  // Opens the cashier on a phone, pays in the sandbox, waits for the result page, then for
  // the return to the app.
  async pay() {
    const { page, consoleErrors } = await newPage({
      viewport: { width: 390, height: 844 },
      locale: "zh-CN",
      accept_language: "zh-CN,zh;q=0.9,en;q=0.5",
    });
    let opened = await page.goto(input.url);
    let choices = null;
    if (input.pick) {
      // The aggregated cashier: the accounts offered, then the one picked.
      choices = await page.locator("#choices button").allInnerTexts();
      await shot(page, "cashier-picker-zh");
      [opened] = await Promise.all([page.waitForNavigation(), page.click(input.pick)]);
    }
    const before = {
      choices,
      status_code: opened.status(),
      title: await page.title(),
      amount: await text(page, "#amount"),
      merchant: await text(page, "#merchant"),
      status: await text(page, "#status"),
      pay: await text(page, "#pay"),
      overflows: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
    };
    await shot(page, "cashier-pending-zh");
    await page.click(input.button || "#pay");
    await page.waitForSelector(`#status.${input.expect_status || "succeeded"}`, { timeout: 20000 });
    const after = { status: await text(page, "#status"), url: page.url() };
    await shot(page, `cashier-${input.expect_status || "succeeded"}-zh`);
    let returned = null;
    if (input.return_prefix) {
      await page.waitForURL((url) => url.href.startsWith(input.return_prefix), { timeout: 20000 });
      returned = page.url();
    }
    return { before, after, returned, console_errors: consoleErrors };
  },

  // English by ?lang=en, then Chinese by the switch.
  async language() {
    const { page } = await newPage({ accept_language: "en-US" });
    await page.goto(input.url);
    const english = { lang: await page.getAttribute("html", "lang"), pay: await text(page, "#pay") };
    await shot(page, "cashier-pending-en");
    await page.click("#lang-zh");
    await page.waitForSelector("html[lang=zh]");
    const chinese = { lang: await page.getAttribute("html", "lang"), pay: await text(page, "#pay"), url: page.url() };
    return { english, chinese };
  },

  // A link without its token (or with a wrong one) shows nothing of the payment.
  async invalid() {
    const { page } = await newPage({});
    const opened = await page.goto(input.url);
    await shot(page, "cashier-invalid-link");
    return { status_code: opened.status(), body: await page.locator("body").innerText() };
  },

  // The QR on the page, as a picture (for zbarimg).
  async qr() {
    const { page, consoleErrors } = await newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(input.url);
    await page.locator("#qr svg").screenshot({ path: input.png });
    await shot(page, "cashier-wechatpay-pc-qr");
    return { caption: await text(page, "#qr figcaption"), console_errors: consoleErrors };
  },
};

try {
  const result = await scenarios[scenario]();
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await browser.close();
}
