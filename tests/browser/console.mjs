// Drives Debian's headless Chromium (playwright-core, no bundled browser) through aragora's
// operations console and developer portal, as an on-call engineer and an API user would.
// tests/e2e/console.rs starts `aragora up` and runs this with:
//   ARAGORA_URL          https://127.0.0.1:PORT (the gateway; its certificate is self-signed)
//   ARAGORA_ADMIN_KEY    the admin key `up` printed
//   ARAGORA_READER_KEY   a reader's API key
//   ARAGORA_SCREENSHOTS  where to save the screenshots
//   CHROMIUM             the browser (default /usr/bin/chromium)
// Each scenario prints `ok <name>` when it passed; the first failure prints `FAIL <name>: ...`
// and exits 1. Every wait has a deadline (Playwright's timeouts); nothing sleeps to synchronise.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = need("ARAGORA_URL");
const adminKey = need("ARAGORA_ADMIN_KEY");
const readerKey = need("ARAGORA_READER_KEY");
const shots = need("ARAGORA_SCREENSHOTS");
mkdirSync(shots, { recursive: true });

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.log(`FAIL setup: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(30_000);
const page = await context.newPage();

// What the page did that a test should hear about: CSP refusals, script errors, any URL
// carrying the key.
const problems = [];
const urls = [];
const watch = (p) => {
  p.on("console", (message) => {
    if (message.type() === "error" && !/status of (401|403|404|409|501|502|503)/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  p.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  p.on("request", (request) => urls.push(request.url()));
};
watch(page);

// The API as a script would call it (not the page): same origin, same certificate.
async function call(method, path, key, body) {
  const response = await context.request.fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    data: body ? JSON.stringify(body) : undefined,
    failOnStatusCode: false,
  });
  let json = null;
  try {
    json = await response.json();
  } catch {}
  return { status: response.status(), body: json };
}

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

async function until(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await page.waitForTimeout(200); // a poll's interval, not a synchronisation: the deadline decides
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
}

const rowOf = (container, text) => page.locator(`${container} tr`, { hasText: text });

async function scenario(name, body) {
  try {
    await body();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.stack ?? err}`);
    await page.screenshot({ path: join(shots, `failed-${name}.png`), fullPage: true }).catch(() => {});
    console.log(`problems so far: ${JSON.stringify(problems)}`);
    await browser.close();
    process.exit(1);
  }
}

await scenario("login", async () => {
  await page.goto(`${base}/admin`);
  await page.getByLabel("API key or token").fill(adminKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(/Signed in as .* \(role admin\)/).waitFor();
});

await scenario("overview", async () => {
  await rowOf("#health", "Database").getByText("healthy").waitFor();
  await rowOf("#health", "API").getByText("healthy").waitFor();
  await rowOf("#health", "Replica").getByText("ready").first().waitFor();
  await page.locator("#active-debates dd").waitFor();
  await page.screenshot({ path: join(shots, "overview-1280.png") });
});

await scenario("slo", async () => {
  await page.locator("#slos article.slo").first().waitFor();
  await page.locator("#slos svg.chart").first().waitFor();
  await page.locator("#slos").getByText(/error budget/).first().waitFor();
  await page.locator("#slos").getByText(/firing/).first().waitFor();
  await page.locator("#slos").scrollIntoViewIfNeeded();
  await page.locator("#slos").screenshot({ path: join(shots, "slo-1280.png") });
});

await scenario("debate-live", async () => {
  const topic = `Live in the console ${Date.now()}`;
  const created = await call("POST", "/api/debates", adminKey, { topic, rounds: 2 });
  expect(created.status === 202, `debate not accepted: ${JSON.stringify(created)}`);
  const row = rowOf("#debate-list", topic).first();
  await row.waitFor();
  await row.getByRole("button", { name: `Watch ${topic}` }).click();
  const messages = page.locator("#debate-view li.event.agent_message");
  await messages.first().waitFor();
  const seen = await messages.count();
  const finished = page.locator("#debate-view li.event.debate_end");
  expect((await finished.count()) === 0, "the debate had ended before the view opened: nothing arrived live");
  // More arrive while the page stays as it is: pushed over the WebSocket, no reload.
  await until("more messages over the WebSocket", async () => (await messages.count()) > seen);
  await finished.waitFor({ timeout: 120_000 });
  await page.locator("#debate-view li.event.consensus").waitFor();
  await page.locator("#debate-view").getByText(/finished: completed/).waitFor();
});

await scenario("breaker", async () => {
  const fault = await call("POST", "/api/system/faults", adminKey, {
    kind: "agent_failing",
    agent: "openai",
    duration_seconds: 600,
  });
  expect(fault.status === 201, `fault not injected: ${JSON.stringify(fault)}`);
  const debate = await call("POST", "/api/debates", adminKey, { topic: `Who fails ${Date.now()}`, rounds: 1 });
  expect(debate.status === 202, `debate not accepted: ${JSON.stringify(debate)}`);
  const row = rowOf("#breakers", "openai");
  await until("the openai breaker shown open", async () => /\bopen\b/.test(await row.innerText()));
  const cleared = await call("DELETE", "/api/system/faults", adminKey);
  expect(cleared.status === 200, `faults not cleared: ${JSON.stringify(cleared)}`);
  const reset = row.getByRole("button", { name: "Reset openai" });
  await reset.focus();
  await page.keyboard.press("Enter"); // keyboard, as someone without a mouse would
  await until("the openai breaker shown closed", async () => /closed/.test(await row.innerText()));
  const breakers = await call("GET", "/api/system/circuit-breakers", adminKey);
  const openai = breakers.body.circuit_breakers.find((b) => b.agent === "openai");
  expect(openai.state === "CLOSED", `the API still says ${openai.state}`);
});

await scenario("maintenance", async () => {
  await page.getByRole("button", { name: "Turn maintenance on" }).click();
  await page.locator("#maintenance-state").getByText(/ON/).waitFor();
  const refused = await call("POST", "/api/debates", adminKey, { topic: "During maintenance", rounds: 1 });
  expect(refused.status === 503, `a debate during maintenance answered ${refused.status}`);
  await page.getByRole("button", { name: "Turn maintenance off" }).click();
  await page.locator("#maintenance-state").getByText("off").waitFor();
  // Each replica and the gateway learn the switch within a second: until then a 503 again.
  await until("a debate accepted after maintenance", async () => {
    const accepted = await call("POST", "/api/debates", adminKey, { topic: "After maintenance", rounds: 1 });
    expect([202, 503].includes(accepted.status), `a debate after maintenance answered ${accepted.status}`);
    return accepted.status === 202;
  }, 10_000);
});

await scenario("drill", async () => {
  const before = await page.locator("#drill-history svg.chart").first().locator("circle.a").count();
  await page.getByRole("button", { name: "Run a drill now" }).click();
  await page.locator("#drill-state").getByText(/running|passed/).first().waitFor();
  await page.locator("#drill-state").getByText("passed").waitFor({ timeout: 180_000 });
  await page.locator("#drill-result").getByText(/RTO/).waitFor();
  await until(
    "the drill's RTO in the chart",
    async () => (await page.locator("#drill-history svg.chart").first().locator("circle.a").count()) > before,
  );
  await page.locator("#dr").scrollIntoViewIfNeeded();
  await page.locator("#dr").screenshot({ path: join(shots, "dr-1280.png") });
});

await scenario("phone", async () => {
  // The 1280 px pictures again, now that the SLO history and the drills have points.
  await page.locator("#overview").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, "overview-1280.png") });
  await page.locator("#slos").screenshot({ path: join(shots, "slo-1280.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator("#overview").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, "overview-390.png") });
  await page.locator("#slos").scrollIntoViewIfNeeded();
  await page.locator("#slos").screenshot({ path: join(shots, "slo-390.png") });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const wide = await page.evaluate(() =>
    [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
      .slice(0, 8)
      .map((e) => `${e.tagName}.${e.className} (${(e.textContent || "").slice(0, 30)})`),
  );
  expect(overflow <= 1, `the page is ${overflow} px wider than a phone: ${wide.join(" | ")}`);
  await page.setViewportSize({ width: 1280, height: 900 });
});

await scenario("reader-refused", async () => {
  const readerContext = await browser.newContext({ ignoreHTTPSErrors: true });
  const readerPage = await readerContext.newPage();
  const asked = [];
  readerPage.on("request", (request) => asked.push(new URL(request.url()).pathname));
  await readerPage.goto(`${base}/admin`);
  await readerPage.getByLabel("API key or token").fill(readerKey);
  await readerPage.getByRole("button", { name: "Sign in" }).click();
  await readerPage.getByRole("alert").getByText(/needs the admin role/).waitFor();
  expect(await readerPage.locator("#sections").isHidden(), "admin sections shown to a reader");
  const adminCalls = asked.filter((path) => path.startsWith("/api/") && path !== "/api/auth/me");
  expect(adminCalls.length === 0, `the page asked ${adminCalls} for a reader`);
  const refused = await call("GET", "/api/system/circuit-breakers", readerKey);
  expect(refused.status === 403, `the API answered a reader ${refused.status}`);
  await readerContext.close();
});

await scenario("developer-keys", async () => {
  await page.goto(`${base}/developer`);
  await page.getByText(/Signed in as .* \(role admin\)/).waitFor();
  await page.locator("#me-role").getByText("admin").waitFor();
  const name = `browser-${Date.now()}`;
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Role", { exact: true }).selectOption("reader");
  await page.getByRole("button", { name: "Create key" }).click();
  const shown = page.locator("#created-key");
  await shown.waitFor();
  const key = (await shown.innerText()).trim();
  expect(key.startsWith("ara_"), `not a key: ${key}`);
  const works = await call("GET", "/api/auth/me", key);
  expect(works.status === 200 && works.body.role === "reader", `the new key: ${JSON.stringify(works)}`);
  await page.getByRole("button", { name: "I have stored it; hide it" }).click();
  await shown.waitFor({ state: "detached" });
  await page.reload();
  await page.locator("#key-list").getByText(name).waitFor();
  expect(!(await page.content()).includes(key), "the key is shown again after a reload");
  await page.getByRole("button", { name: new RegExp(`Revoke ${name}`) }).click();
  await until("the key shown revoked", async () => /revoked/.test(await rowOf("#key-list", name).innerText()));
  const revoked = await call("GET", "/api/auth/me", key);
  expect(revoked.status === 401, `a revoked key answered ${revoked.status}`);
  await page.locator("#usage").getByText(/Live in the console/).first().waitFor();
});

await scenario("logout", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key or token").waitFor();
  const kept = await page.evaluate(() => sessionStorage.length);
  expect(kept === 0, "the key is still in sessionStorage");
});

await scenario("hygiene", async () => {
  const leaked = urls.filter((url) => url.includes(adminKey) || url.includes(readerKey));
  expect(leaked.length === 0, `a URL carried a key: ${leaked}`);
  expect(problems.length === 0, `the page reported: ${problems.join(" | ")}`);
});

await browser.close();
