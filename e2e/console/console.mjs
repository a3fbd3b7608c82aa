// Drives the mPOS operator console in headless Chromium for the Rust end-to-end test.
//
// Env: CONSOLE_URL (e.g. http://127.0.0.1:8090/console/), CONSOLE_TOKEN, CONSOLE_TENANT,
// TERMINAL_ID (a terminal of the tenant), SCREENSHOT_DIR (created), CHROMIUM (default
// /usr/bin/chromium), CONSOLE_TIMEOUT_MS (each wait, default 30000).
//
// Protocol with the test on stdin/stdout, one line each:
//   script -> test   STEP <name> [json]     the test does something, then answers
//   test -> script   OK <name> [json]       the script goes on
// The script's other output never starts with STEP; it ends with DONE and exit code 0. Any
// failed assertion, page error, console error, timeout or unexpected stdin line ends it with
// exit code 1, the reason on stderr and a screenshot failure.png in SCREENSHOT_DIR.
//
// Steps: log in, see TERMINAL_ID on the estate page; raise the EUR floor limit to 7000 and
// watch the terminal acknowledge the new version; see the SoftPOS charts; see a live payment
// appear, approved, and open its story; verify the audit trail and replay the read models.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] || fallback;
  if (!value) {
    process.stderr.write(`console.mjs FAILED: ${name} is not set\n`);
    process.exit(1);
  }
  return value;
};

const CONSOLE_URL = env('CONSOLE_URL');
const TOKEN = env('CONSOLE_TOKEN');
const TENANT = env('CONSOLE_TENANT');
const TERMINAL_ID = env('TERMINAL_ID');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const TIMEOUT = Number(process.env.CONSOLE_TIMEOUT_MS || 30000);

/**
 * Failed requests the console makes on purpose and handles: Chromium logs each failed
 * response as a console error, so these (and only these) are not failures. A tenant API key
 * may not list tenants (the switcher falls back to a text field), and key-injection may not
 * know a terminal yet (its key slots show "—").
 */
const EXPECTED_FAILED_RESOURCES = [
  { url: /\/console\/api\/svc\/terminal-management\/v1\/tenants$/, status: /^40[13]$/ },
  {
    url: /\/console\/api\/svc\/key-injection\/v1\/tenants\/[^/]+\/terminals\/[^/]+\/keys$/,
    status: /^40[134]$/,
  },
];

let browser;
let page;
let failing = false;

// ---------------------------------------------------------------------------------------------
// Failing, logging, the stdin protocol

function log(message) {
  // Progress for a human; never starts with STEP (the protocol's keyword).
  process.stdout.write(`console: ${message}\n`);
}

async function fail(error) {
  if (failing) return;
  failing = true;
  process.stderr.write(`console.mjs FAILED: ${error?.stack ?? error}\n`);
  try {
    if (page && !page.isClosed()) {
      await page.screenshot({
        path: path.join(process.env.SCREENSHOT_DIR || '.', 'failure.png'),
        fullPage: true,
        timeout: 10000,
      });
    }
  } catch (screenshotError) {
    process.stderr.write(`(no failure screenshot: ${screenshotError.message})\n`);
  }
  try {
    await browser?.close();
  } catch {
    // Exiting anyway.
  }
  process.exit(1);
}

/** Reads stdin line by line; `next()` resolves to the next line, or null at end of input. */
class LineReader {
  constructor(stream) {
    this.buffer = '';
    this.lines = [];
    this.waiters = [];
    this.ended = false;
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      this.buffer += chunk;
      let newline;
      while ((newline = this.buffer.indexOf('\n')) >= 0) {
        this.push(this.buffer.slice(0, newline).replace(/\r$/, ''));
        this.buffer = this.buffer.slice(newline + 1);
      }
    });
    stream.on('end', () => {
      if (this.buffer) this.push(this.buffer);
      this.buffer = '';
      this.ended = true;
      for (const waiter of this.waiters.splice(0)) waiter(null);
    });
    stream.on('error', () => stream.emit('end'));
  }

  push(line) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(line);
    else this.lines.push(line);
  }

  next() {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

const stdin = new LineReader(process.stdin);

/** Asks the test to do `name`, waits for `OK name [json]` and returns the json (or null). */
async function step(name, data) {
  process.stdout.write(`STEP ${name}${data === undefined ? '' : ` ${JSON.stringify(data)}`}\n`);
  let timer;
  const line = await Promise.race([
    stdin.next(),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no "OK ${name}" on stdin within ${TIMEOUT} ms`)), TIMEOUT);
    }),
  ]).finally(() => clearTimeout(timer));
  if (line === null) throw new Error(`stdin closed while waiting for "OK ${name}"`);
  const match = /^OK (\S+)(?: (.*))?$/.exec(line.trim());
  if (!match || match[1] !== name)
    throw new Error(`expected "OK ${name}" on stdin, got ${JSON.stringify(line)}`);
  if (match[2] === undefined || match[2].trim() === '') return null;
  try {
    return JSON.parse(match[2]);
  } catch {
    throw new Error(`"OK ${name}" carries no valid JSON: ${match[2]}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Page helpers

const byTestId = (id) => page.getByTestId(id, { exact: true });

async function screenshot(name) {
  // From the top: the console's header is sticky and would show mid-page otherwise.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
  log(`screenshot ${name}`);
}

/** Waits until `predicate(arg)` is truthy in the page; returns its value. */
async function until(description, predicate, arg) {
  try {
    const handle = await page.waitForFunction(predicate, arg, { timeout: TIMEOUT, polling: 100 });
    return await handle.jsonValue();
  } catch (error) {
    throw new Error(
      `timed out after ${TIMEOUT} ms waiting for ${description} (${error.message.split('\n')[0]})`,
    );
  }
}

async function goTo(route) {
  await byTestId(`nav-${route}`).click();
  await byTestId(`page-${route}`).waitFor({ state: 'visible' });
}

// ---------------------------------------------------------------------------------------------
// The steps

async function login() {
  await page.goto(CONSOLE_URL, { waitUntil: 'load' });
  await byTestId('login-token').fill(TOKEN);
  await byTestId('login-tenant').fill(TENANT);
  await byTestId('login-submit').click();
  await byTestId('page-estate').waitFor({ state: 'visible' });
  await until(
    `terminal ${TERMINAL_ID} in terminals-table`,
    (id) => {
      const table = document.querySelector('[data-testid="terminals-table"]');
      return (
        table !== null &&
        [...table.querySelectorAll('tbody tr')].some((row) => row.dataset.testid === `terminal-row-${id}`)
      );
    },
    TERMINAL_ID,
  );
  const stored = await page.evaluate(() => ({
    local: Object.keys(localStorage).length,
    cookies: document.cookie,
    url: location.href,
  }));
  assert(stored.local === 0, 'nothing is kept in localStorage');
  assert(stored.cookies === '', 'no cookie is set');
  assert(!stored.url.includes(TOKEN), 'the token is not in the URL');
  log(`logged in; estate shows ${TERMINAL_ID}`);
  await screenshot('01-estate.png');
}

/** A blocked card token the walk adds: 32 bytes, hex. */
const BLOCKED_TOKEN = 'ab'.repeat(32);

async function floorLimit() {
  const readVersion = () => byTestId('parameters-version').getAttribute('data-version');
  // The version in force is shown once the parameter status has loaded.
  await until(
    'the parameter status',
    () => document.querySelector('[data-testid="param-status-table"] tbody tr') !== null,
  );
  await byTestId('parameters-save').waitFor({ state: 'visible' });
  await until(
    'the parameters to load',
    () => document.querySelector('[data-testid="parameters-other"]')?.textContent !== '',
  );
  const before = BigInt((await readVersion()) || '0');

  const eur = byTestId('floor-limit-EUR');
  if (await eur.count()) {
    await eur.fill('7000');
  } else {
    await byTestId('floor-limit-new-currency').fill('EUR');
    await byTestId('floor-limit-new-amount').fill('7000');
    await byTestId('floor-limit-add').click();
  }
  // An action code and a blocked card token (a keyed token, never a PAN) in the same change.
  await byTestId('tac-denial').fill('0000000000');
  await byTestId('blocked-tokens').fill(BLOCKED_TOKEN);
  const [put] = await Promise.all([
    page.waitForRequest(
      (request) =>
        request.method() === 'PUT' &&
        /\/terminal-management\/v1\/tenants\/[^/]+\/parameters$/.test(new URL(request.url()).pathname),
      { timeout: TIMEOUT },
    ),
    byTestId('parameters-save').click(),
  ]);
  const body = put.postDataJSON();
  const eurLimit = (body.floorLimits ?? []).find((limit) => limit.currency === 'EUR');
  assert(
    eurLimit && String(eurLimit.amount) === '7000',
    `the PUT carries EUR amount "7000" (got ${JSON.stringify(body.floorLimits)})`,
  );
  assert(
    body.terminalActionCodes?.denial === '0000000000' && (body.blockedCardTokens ?? []).length === 1,
    `the PUT carries the action code and the token (got ${JSON.stringify(body)})`,
  );
  const response = await put.response();
  assert(response && response.ok(), `the PUT succeeded (status ${response?.status()})`);

  const version = await until(
    `the parameters version to rise above ${before}`,
    (previous) => {
      const shown = document.querySelector('[data-testid="parameters-version"]')?.dataset.version;
      return shown && /^\d+$/.test(shown) && BigInt(shown) > BigInt(previous) ? shown : null;
    },
    String(before),
  );
  log(`floor limit saved; version ${before} -> ${version}`);

  await step('floor-limit', { amount: '7000', version });
  await until(
    `${TERMINAL_ID} to acknowledge version ${version}`,
    ([id, wanted]) => {
      const row = document.querySelector(
        `[data-testid="param-status-table"] tr[data-terminal-id="${CSS.escape(id)}"]`,
      );
      return row !== null && row.dataset.installedVersion === wanted;
    },
    [TERMINAL_ID, version],
  );
  log(`${TERMINAL_ID} acknowledged version ${version}`);
  await screenshot('02-floor-limit.png');
}

async function softpos() {
  await goTo('softpos');
  const marks = await until('the adoption chart to draw a bar or point', () => {
    const chart = document.querySelector('svg[data-testid="adoption-chart"]');
    const marks = chart ? chart.querySelectorAll('rect.bar, circle.point').length : 0;
    return marks > 0 ? marks : null;
  });
  const distribution = await until('a distribution chart with a bar', () => {
    const charts = [...document.querySelectorAll('svg[data-testid^="dist-"]')];
    const drawn = charts.find((chart) => chart.querySelector('rect.bar'));
    return drawn ? drawn.dataset.testid : null;
  });
  log(`SoftPOS: adoption chart with ${marks} marks, ${distribution} drawn`);
  await screenshot('03-softpos.png');
}

async function payments() {
  await goTo('payments');
  await byTestId('payments-table').waitFor({ state: 'visible' });
  const answer = await step('payment');
  const paymentId = answer?.paymentId;
  assert(
    typeof paymentId === 'string' && paymentId !== '',
    `"OK payment" names a paymentId (got ${JSON.stringify(answer)})`,
  );

  const row = byTestId(`payment-row-${paymentId}`);
  await row.waitFor({ state: 'visible', timeout: TIMEOUT });
  await until(
    `payment ${paymentId} to show approved`,
    (id) => {
      const tr = document.querySelector(`tr[data-payment-id="${CSS.escape(id)}"]`);
      return tr !== null && /approved/i.test(tr.querySelector('[data-col="status"]')?.textContent ?? '');
    },
    paymentId,
  );
  const pan = (await row.locator('[data-col="pan"]').textContent()) ?? '';
  assert(pan.includes('*'), `the masked PAN contains "*" (got ${JSON.stringify(pan)})`);
  const acquirer = ((await row.locator('[data-col="acquirer"]').textContent()) ?? '').trim();
  assert(acquirer !== '' && acquirer !== '—', `the row names the acquirer (got ${JSON.stringify(acquirer)})`);
  log(`payment ${paymentId} approved by ${acquirer}, card ${pan}`);
  await screenshot('04-payments.png');

  await row.click();
  await byTestId('payment-story').waitFor({ state: 'visible' });
  await until(
    `the story of ${paymentId} to show acquirer ${acquirer}`,
    ([id, acquirerId]) => {
      const story = document.querySelector('[data-testid="payment-story"]');
      return (
        story !== null &&
        story.dataset.paymentId === id &&
        story.dataset.state === 'final' &&
        story.querySelector('[data-testid="story-acquirer"]')?.textContent.includes(acquirerId) === true &&
        /Checks passed/.test(story.querySelector('[data-testid="story-timeline"]')?.textContent ?? '') &&
        /deciphered in the HSM/.test(story.querySelector('[data-testid="story-timeline"]')?.textContent ?? '') &&
        /Route decided/.test(story.querySelector('[data-testid="story-timeline"]')?.textContent ?? '')
      );
    },
    [paymentId, acquirer],
  );
  log(`story of ${paymentId} shown`);
  await screenshot('05-payment-story.png');
}

// Clicks one of the audit page's checks and waits until its result is done (or fails).
async function runCheck(buttonId, name, what) {
  await byTestId(buttonId).click();
  const state = await until(
    `${what} to finish`,
    (name) => {
      const state = document.querySelector(`[data-testid="${name}-result"]`)?.dataset.state;
      return state === 'done' || state === 'error' ? state : null;
    },
    name,
  );
  if (state === 'error') {
    throw new Error(`${what} failed: ${await byTestId(`${name}-error`).textContent()}`);
  }
}

async function audit() {
  await goTo('audit');
  await runCheck('audit-verify', 'audit', 'the audit verification');
  const result = await page.evaluate(() => ({
    banner: document.querySelector('[data-testid="audit-banner"]')?.textContent ?? '',
    services: [...document.querySelectorAll('[data-testid^="audit-service-"]')].map((row) => ({
      service: row.dataset.testid.slice('audit-service-'.length),
      intact: row.dataset.intact,
      text: row.textContent,
    })),
  }));
  assert(result.services.length > 0, 'the audit lists at least one service');
  for (const service of result.services) {
    assert(
      service.intact === 'true' && /intact/i.test(service.text) && !/NOT intact/.test(service.text),
      `${service.service} is intact (row: ${service.text})`,
    );
  }
  assert(
    /intact/i.test(result.banner) && !/NOT/.test(result.banner),
    `the banner says intact (got ${JSON.stringify(result.banner)})`,
  );
  log(`audit intact: ${result.services.map((service) => service.service).join(', ')}`);
  await screenshot('06-audit.png');

  // The read models, each replayed from its log and compared with the live one.
  await runCheck('audit-replay', 'replay', 'the read models\' replay');
  const replay = await page.evaluate(() => ({
    banner: document.querySelector('[data-testid="replay-banner"]')?.textContent ?? '',
    models: [...document.querySelectorAll('[data-testid^="replay-model-"]')].map((row) => ({
      name: row.dataset.testid.slice('replay-model-'.length),
      identical: row.dataset.identical,
      text: row.textContent,
    })),
  }));
  // The payment made in this walk is in authorization's payment list.
  for (const name of ['tenants', 'authorization-payments']) {
    assert(
      replay.models.some((model) => model.name === name),
      `the replay lists ${name} (got ${replay.models.map((model) => model.name).join(', ')})`,
    );
  }
  for (const model of replay.models) {
    assert(
      model.identical === 'true' && /identical/.test(model.text) && !/DIFFERS/.test(model.text),
      `${model.name} equals its replay (row: ${model.text})`,
    );
  }
  assert(
    /equals its replay/.test(replay.banner),
    `the banner says every read model equals its replay (got ${JSON.stringify(replay.banner)})`,
  );
  log(`read models identical to their replay: ${replay.models.map((model) => model.name).join(', ')}`);
  await screenshot('07-replay.png');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (error) => fail(new Error(`page error: ${error.stack ?? error.message}`)));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
    const url = message.location()?.url ?? '';
    if (
      failed &&
      EXPECTED_FAILED_RESOURCES.some(
        (allowed) => allowed.status.test(failed[1]) && allowed.url.test(new URL(url, CONSOLE_URL).pathname),
      )
    ) {
      log(`(expected: ${failed[1]} from ${url})`);
      return;
    }
    fail(new Error(`console error: ${text}${url ? ` (${url})` : ''}`));
  });

  await login();
  await floorLimit();
  await softpos();
  await payments();
  await audit();

  await browser.close();
  process.stdout.write('DONE\n');
  process.exit(0);
}

main().catch(fail);
