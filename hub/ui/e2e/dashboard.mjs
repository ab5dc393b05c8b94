// Drives the dashboard and the partner portal in headless Chromium with
// playwright-core. Run by TestUIInBrowser (cmd/partnerhub), which starts
// the hub, seeds it and passes:
//   PARTNERHUB_URL, ADMIN_KEY, PARTNER_KEY, OWN_CODE, OTHER_NAME,
//   OTHER_CONVERSION, RECEIVER_URL, CHROMIUM, SCREENSHOTS (a folder).
// It prints "UI E2E OK" and a JSON summary when every step passed.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) { throw new Error(`${name} is not set`); }
  return v;
};
const base = env("PARTNERHUB_URL");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const summary = {};
const step = async (name, fn) => {
  const t0 = Date.now();
  try {
    await fn();
  } catch (err) {
    err.message = `step "${name}": ${err.message}`;
    throw err;
  }
  console.log(`ok  ${name} (${Date.now() - t0} ms)`);
};
const expect = (cond, msg) => { if (!cond) { throw new Error(msg); } };

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const flash = () => page.locator("p.alert").first().innerText();

  const login = async (key) => {
    await page.goto(base + "/ui");
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForLoadState("domcontentloaded");
  };

  await step("admin signs in with the keyboard only", async () => {
    await page.goto(base + "/ui");
    const focused = await page.evaluate(() => document.activeElement.id);
    expect(focused === "key", `the key field is not focused (${focused})`);
    await page.keyboard.type(env("ADMIN_KEY"));
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/ui\/deliveries/);
    expect((await page.locator(".role").innerText()).includes("admin"), "role is not admin");
    await page.keyboard.press("Tab");
    const first = await page.evaluate(() => document.activeElement.textContent.trim());
    expect(first === "Skip to content", `first Tab stop is ${JSON.stringify(first)}`);
  });

  let deliveryID;
  await step("finds the failed delivery", async () => {
    await page.getByLabel("Status").selectOption("failed");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/status=failed/);
    const link = page.locator("tbody tr[data-status=failed] a").first();
    deliveryID = (await link.innerText()).trim();
    expect(deliveryID.startsWith("dlv_"), `no failed delivery listed (${deliveryID})`);
    await link.click();
    await page.waitForURL(/\/ui\/deliveries\/dlv_/);
    const text = await page.locator("main").innerText();
    expect(text.includes("410"), "the attempt log does not show the 410");
    summary.delivery = deliveryID;
  });

  await step("re-enables the endpoint", async () => {
    await page.getByRole("link", { name: "re-enable it first" }).click();
    const row = page.locator("tr[data-endpoint]").first();
    expect((await row.innerText()).includes("410 Gone"), "endpoint row lacks its disabled reason");
    await row.getByRole("button", { name: "Re-enable" }).click();
    expect((await flash()).includes("re-enabled"), "no re-enabled message");
    expect((await page.locator("tr[data-endpoint]").first().innerText()).includes("enabled"), "endpoint not shown enabled");
  });

  await step("retries the delivery and sees it delivered without reloading", async () => {
    await page.goto(`${base}/ui/deliveries/${deliveryID}`);
    await page.getByRole("button", { name: "Retry delivery" }).click();
    expect((await flash()).includes("Retry queued"), `retry message: ${await flash()}`);
    // The status region is refreshed by htmx polling.
    await page.locator("#delivery-status").filter({ hasText: "succeeded" }).waitFor({ timeout: 30000 });
    const log = await page.locator("main table tbody").innerText();
    expect(log.includes("204"), `the attempt log lacks the 204: ${log}`);
  });

  await step("operations screenshot", async () => {
    await page.goto(base + "/ui/deliveries");
    await page.screenshot({ path: join(shots, "operations.png") });
  });

  await step("sends a test event from a source", async () => {
    await page.goto(base + "/ui/sources");
    await page.getByRole("button", { name: "Send test event" }).first().click();
    const msg = await flash();
    expect(msg.includes("accepted as inbound event"), `trigger: ${msg}`);
  });

  await step("runs a payout", async () => {
    await page.goto(base + "/ui/payouts");
    await page.getByRole("button", { name: "Create payout run" }).click();
    await page.waitForURL(/\/ui\/payouts\/pay_/);
    const table = await page.locator("main table").innerText();
    expect(table.includes("Alice Example") && table.includes("15.00 USD"), `payout lines: ${table}`);
    await page.getByRole("link", { name: "Export CSV" }).click();
    await page.locator("#status").filter({ hasText: "CSV downloaded" }).waitFor();
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Confirm paid" }).click();
    expect((await flash()).includes("confirmed"), "no confirmation message");
    summary.payout = page.url().split("/").pop();
  });

  await step("program screenshot", async () => {
    await page.goto(base + "/ui/reports");
    await page.locator("figure.chart svg").first().waitFor();
    await page.screenshot({ path: join(shots, "program.png") });
  });

  await step("signs out", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/ui\/login/);
    await page.goto(base + "/ui/deliveries");
    await page.waitForURL(/\/ui\/login/);
  });

  await step("partner sees its own link and data only", async () => {
    await login(env("PARTNER_KEY"));
    await page.waitForURL(/\/ui\/portal/);
    const link = await page.getByLabel("Share this link").inputValue();
    expect(link.endsWith("/r/" + env("OWN_CODE")), `referral link ${link}`);
    await page.getByRole("button", { name: "Copy link" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    const text = await page.locator("main").innerText();
    expect(!text.includes(env("OTHER_NAME")), "the portal shows the other partner");
    expect(!text.includes(env("OTHER_CONVERSION")), "the portal shows the other partner's conversion");
    expect(text.includes("Paid") && text.includes("15.00"), "earnings lack the paid commission");
  });

  await step("partner cannot open another partner's conversion or the operations pages", async () => {
    const res = await page.goto(`${base}/ui/conversions/${env("OTHER_CONVERSION")}`);
    expect(res.status() === 404, `other conversion answered ${res.status()}`);
    expect(!(await page.locator("main").innerText()).includes(env("OTHER_NAME")), "other partner leaked");
    const ops = await page.goto(base + "/ui/deliveries");
    expect(ops.status() === 403, `deliveries answered ${ops.status()} to a partner`);
  });

  await step("partner adds, pings and rotates its own endpoint", async () => {
    await page.goto(base + "/ui/portal");
    await page.getByLabel("URL").fill(env("RECEIVER_URL") + "/partner-hooks");
    await page.getByLabel("Description").fill("my automation");
    await page.getByRole("button", { name: "Add endpoint" }).click();
    const secret = await page.getByLabel("Signing secret").inputValue();
    expect(secret.startsWith("whsec_"), "no secret shown");
    const row = page.locator("tr[data-endpoint]").filter({ hasText: "partner-hooks" });
    await row.getByRole("button", { name: "Ping" }).click();
    const msg = await flash();
    expect(msg.includes("Ping answered 204"), `ping: ${msg}`);
    page.once("dialog", (d) => d.accept());
    await page.locator("tr[data-endpoint]").filter({ hasText: "partner-hooks" }).getByRole("button", { name: "Rotate secret" }).click();
    const rotated = await page.getByLabel("Signing secret").inputValue();
    expect(rotated.startsWith("whsec_") && rotated !== secret, "rotation showed no new secret");
  });

  await step("portal is readable at 360 px", async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(base + "/ui/portal");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(overflow <= 362, `page is ${overflow} px wide at 360`);
    await page.setViewportSize({ width: 1100, height: 800 });
    await page.screenshot({ path: join(shots, "partner-portal.png") });
  });

  console.log("UI E2E OK " + JSON.stringify(summary));
} finally {
  await browser.close();
}
