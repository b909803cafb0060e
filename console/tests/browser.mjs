// The console in a real headless Chromium (Debian's package, driven by playwright-core),
// against a running dispatcher, GitHub simulator and Slurm cluster that the Rust test
// tests/tests/console_browser.rs started. Every step waits on a condition in the page (never a
// fixed sleep); any failure throws, and the process exits non-zero with what it saw.
//
// Environment (all required): CONSOLE_URL (…/console/), ADMIN_TOKEN, SIM_URL (the simulator,
// HTTPS; NODE_EXTRA_CA_CERTS names its CA), SCREENSHOT_DIR, MARKER (a file the mapped job
// writes `id -un` to), MAPPED_USER, SERVICE_USER, VIEWER_LINK (a one-use login link of
// MAPPED_USER), CHROMIUM (the browser binary).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CONSOLE_URL = env("CONSOLE_URL");
const SIM_URL = env("SIM_URL");
const SHOTS = env("SCREENSHOT_DIR");
const MAPPED_USER = env("MAPPED_USER");
const SERVICE_USER = env("SERVICE_USER");
const LABELS = ["self-hosted", "Linux"];
const WAIT = { timeout: 120_000 };

const shots = [];
async function shot(page, name, what) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  shots.push({ path, what });
}

/** Queue a workflow on the simulator; its job ids. */
async function enqueue(repo, jobs) {
  const response = await fetch(`${SIM_URL}/_sim/workflows`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ repo, name: "console", jobs, delay_ms: 0 }),
  });
  if (!response.ok) throw new Error(`simulator answered ${response.status}: ${await response.text()}`);
  return (await response.json()).job_ids;
}

async function openTab(page, name) {
  await page.click(`#tab-${name}`);
  await page.waitForSelector(`#tab-${name}[aria-selected="true"]`);
}

const count = (page, pool, what) =>
  page.$eval(`[data-pool="${pool}"] [data-count="${what}"]`, (e) => Number(e.textContent));

async function login(page) {
  await page.goto(CONSOLE_URL);
  await page.fill("#token", "certainly-not-the-token");
  await page.click("form.login button[type=submit]");
  const refused = await page.waitForSelector("#login-error", WAIT);
  if (!(await refused.textContent()).includes("wrong admin token")) throw new Error("no refusal shown");
  if (await page.$("#tab-pools")) throw new Error("a wrong token opened the console");
  await shot(page, "01-login-refused", "a wrong admin token is refused on the login form");
  await page.fill("#token", env("ADMIN_TOKEN"));
  await page.click("form.login button[type=submit]");
  await page.waitForSelector('[data-pool="cpu"]', WAIT);
}

/** Three 10-second jobs of acme/gadgets (unmapped: the service user) on a pool of 2. */
async function poolFillsUp(page) {
  const ids = await enqueue("acme/gadgets", [1, 2, 3].map((i) => ({ name: `fill-${i}`, runs_on: LABELS, duration_ms: 10_000 })));
  await page.waitForFunction(() => {
    const n = (w) => Number(document.querySelector(`[data-pool="cpu"] [data-count="${w}"]`)?.textContent ?? 0);
    return n("pending") + n("starting") + n("idle") + n("busy") === 2 && n("waiting") >= 1;
  }, null, WAIT);
  const reason = await page.textContent('[data-pool="cpu"] .reason');
  await shot(page, "02-pools-full", `pool cpu full (2 of 2 runners), a job waiting: "${reason}"`);
  return { ids, reason };
}

/** The third job, waiting for a free slot, moves queued -> in_progress -> completed live. */
async function jobMovesThroughStates(page, jobId) {
  await openTab(page, "jobs");
  const seen = [];
  for (const status of ["queued", "in_progress", "completed"]) {
    await page.waitForSelector(`[data-job="${jobId}"][data-status="${status}"]`, WAIT);
    seen.push(status);
    if (status === "in_progress") await shot(page, "03-jobs-live", `job ${jobId} in progress, its queue and start times filled in`);
  }
  const cells = await page.$$eval(`[data-job="${jobId}"] td`, (tds) => tds.map((td) => td.textContent));
  if (cells.slice(3, 7).some((c) => c === "–")) throw new Error(`job ${jobId} lacks a time: ${cells}`);
  return seen;
}

async function timeline(page) {
  await openTab(page, "timeline");
  await page.waitForFunction(() => document.querySelectorAll("[data-timeline-job] rect.run").length >= 3, null, WAIT);
  await shot(page, "04-timeline", "the last hour: queue wait (amber) and run time (blue) of each job");
}

/** A malformed name is refused with the API's message and changes nothing; then a real edit. */
async function editMapping(page) {
  await openTab(page, "mapping");
  const addUser = async () => {
    await page.fill("#new-user", MAPPED_USER);
    await page.click("form.add-user button");
  };
  await addUser();
  const area = `#mapping-${MAPPED_USER}`;
  await page.fill(area, "acme/widgets/extra");
  await page.click(`form[data-user="${MAPPED_USER}"] button[type=submit]`);
  const error = await (await page.waitForSelector("[data-mapping-error]", WAIT)).textContent();
  if (!error.includes("acme/widgets/extra") || !error.includes("nothing changed")) throw new Error(`unexpected error: ${error}`);
  await shot(page, "05-mapping-error", `a malformed repository name, refused inline: "${error}"`);
  await page.reload();
  await openTab(page, "mapping");
  await page.waitForSelector("form.add-user", WAIT);
  if (await page.$(`form[data-user="${MAPPED_USER}"]`)) throw new Error("the refused edit changed the mapping");
  await addUser();
  await page.fill(area, "acme/widgets");
  await page.click(`form[data-user="${MAPPED_USER}"] button[type=submit]`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.value === "acme/widgets"
    && document.querySelector(".ok"), area, WAIT);
  await shot(page, "06-mapping-saved", `acme/widgets mapped to ${MAPPED_USER}`);
}

/** The next acme/widgets job's runner runs as the newly mapped user. */
async function mappedJobRunsAsUser(page) {
  const [id] = await enqueue("acme/widgets", [{ name: "whoami", runs_on: LABELS, duration_ms: 5_000, command: `id -un > ${env("MARKER")}` }]);
  await openTab(page, "runners");
  await page.waitForSelector(`tr[data-user="${MAPPED_USER}"]`, WAIT);
  await page.waitForFunction((user) => [...document.querySelectorAll(`tr[data-user="${user}"] td:nth-child(4)`)]
    .some((td) => td.textContent !== "–"), MAPPED_USER, WAIT);
  await shot(page, "07-runners", `runners with Slurm job, node, user (the new one as ${MAPPED_USER}) and GitHub job link`);
  await openTab(page, "jobs");
  await page.waitForSelector(`[data-job="${id}"][data-status="completed"]`, WAIT);
  return id;
}

async function keyboardAndPhone(page) {
  await openTab(page, "pools");
  await page.focus("#tab-pools");
  await page.keyboard.press("ArrowRight");
  await page.waitForSelector('#tab-runners[aria-selected="true"]:focus');
  await page.keyboard.press("ArrowLeft");
  await page.waitForSelector('#tab-pools[aria-selected="true"]:focus');
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a phone`);
  await shot(page, "08-pools-phone", "the pools view at phone width (390x844)");
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function errorBanner(page) {
  await page.evaluate(() => setTimeout(() => { throw new Error("injected by the browser test"); }, 0));
  const banner = await page.waitForSelector("#fatal:not([hidden])", WAIT);
  if (!(await banner.textContent()).includes("injected by the browser test")) throw new Error("banner without the error");
  await shot(page, "09-error-banner", "a JavaScript error shows a banner, not a blank page");
}

/** The mapped user's one-use link: their jobs and mapping only, read-only, no edit. */
async function viewer(page) {
  await page.goto(env("VIEWER_LINK"));
  await page.waitForSelector(`text=${MAPPED_USER} (read-only)`, WAIT);
  await openTab(page, "runners");
  await page.waitForSelector(`tr[data-user="${MAPPED_USER}"]`, WAIT);
  if (await page.$(`tr[data-user="${SERVICE_USER}"]`)) throw new Error("a viewer sees another user's runners");
  await openTab(page, "jobs");
  const repos = await page.$$eval("[data-job] td:nth-child(2)", (tds) => tds.map((td) => td.textContent));
  if (repos.length === 0 || repos.some((r) => r !== "acme/widgets")) throw new Error(`a viewer sees ${repos}`);
  await openTab(page, "mapping");
  await page.waitForSelector(`section[data-user="${MAPPED_USER}"]`, WAIT);
  if (await page.$("textarea, form.add-user")) throw new Error("a viewer is offered an editor");
  await shot(page, "10-viewer-mapping", `${MAPPED_USER}'s read-only view from a login link`);
  const edit = await page.evaluate(async (user) => {
    const session = await (await fetch("/console/api/session")).json();
    const r = await fetch(`/console/api/repositories/${user}`, {
      method: "POST", headers: { "content-type": "application/json", "x-csrf-token": session.csrf_token },
      body: JSON.stringify(["acme/hijacked"]),
    });
    return { status: r.status, body: await r.text() };
  }, MAPPED_USER);
  if (edit.status !== 403) throw new Error(`a viewer's edit answered ${edit.status}: ${edit.body}`);
  return repos.length;
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), "gha-console-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env("CHROMIUM"),
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  try {
    await login(page);
    const { ids, reason } = await poolFillsUp(page);
    const states = await jobMovesThroughStates(page, ids[2]);
    await timeline(page);
    await editMapping(page);
    const mappedJob = await mappedJobRunsAsUser(page);
    await keyboardAndPhone(page);
    await errorBanner(page);
    const viewerJobs = await viewer(page);
    const unexpected = pageErrors.filter((m) => !m.includes("injected by the browser test"));
    if (unexpected.length) throw new Error(`JavaScript errors in the page: ${unexpected.join("; ")}`);
    console.log(JSON.stringify({ ok: true, wait_reason: reason, states, mapped_job: mappedJob, viewer_jobs: viewerJobs, screenshots: shots }, null, 2));
  } catch (e) {
    await shot(page, "failure", "the page when the test failed").catch(() => {});
    console.error(`browser test failed: ${e.stack ?? e}\npage errors: ${pageErrors.join("; ")}\nscreenshots: ${SHOTS}`);
    process.exitCode = 1;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
