// mPOS operator console: the browser side (vanilla ES2022 module, no dependencies).
//
// Served by the platform under /console/ with a strict Content-Security-Policy: no inline
// script or style, same-origin connections only. Every element is built with
// document.createElement / createElementNS and filled with textContent, never innerHTML:
// the data shown (terminal labels, payment ids, policy texts...) can hold anything.
//
// Server contract used here (paths relative to /console/):
//   GET  api/config                       {"services":[...], "audit":bool, "replay":bool}
//   ANY  api/svc/{service}/{path}         proxied to that service's HTTP API at /{path}
//   POST api/audit/verify                 per-service verification of the audit trail
//   POST api/audit/replay                 every read model compared with its replay from the log
// Every call carries `Authorization: Bearer <token>`; the token and the tenant live in
// sessionStorage only. Errors come back as JSON {"code","message"}; `message` is shown.
//
// Pages (hash routes): #/estate, #/softpos, #/payments, #/audit. Each page runs inside a
// Scope that owns its polling timers; leaving the page disposes the scope, and answers that
// arrive afterwards are dropped. Stable `data-testid` attributes mark what the end-to-end
// script (e2e/console/console.mjs) drives.

'use strict';

// ---------------------------------------------------------------------------------------------
// Constants and session

/** `/console/api/`, resolved from this module's own URL so it works however the page is opened. */
const API_BASE = new URL('api/', import.meta.url).href;

const TM = 'terminal-management';
const ATTESTATION = 'attestation';
const ROUTING = 'routing';
const AUTHORIZATION = 'authorization';
const KEY_INJECTION = 'key-injection';

const TOKEN_KEY = 'mpos.console.token';
const TENANT_KEY = 'mpos.console.tenant';

/** Payment statuses after which nothing changes any more. */
const FINAL_STATUSES = new Set([
  'PAYMENT_STATUS_APPROVED',
  'PAYMENT_STATUS_DECLINED',
  'PAYMENT_STATUS_REVERSED',
]);

/** Decline reasons given after the payment was handed to routing. */
const ROUTED_DECLINES = new Set([
  'DECLINE_REASON_NO_ROUTE',
  'DECLINE_REASON_ACQUIRER_UNAVAILABLE',
  'DECLINE_REASON_ISSUER_DECLINED',
  'DECLINE_REASON_ACQUIRER_TIMEOUT',
]);

const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) ?? '';
  },
  get tenant() {
    return sessionStorage.getItem(TENANT_KEY) ?? '';
  },
  set tenant(value) {
    sessionStorage.setItem(TENANT_KEY, value);
  },
  start(token, tenant) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(TENANT_KEY, tenant);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TENANT_KEY);
  },
};

/** What the server offers: filled from api/config at start. */
const config = {
  services: new Set([TM, ATTESTATION, ROUTING, AUTHORIZATION, KEY_INJECTION]),
  audit: true,
  replay: false,
};

// ---------------------------------------------------------------------------------------------
// DOM helpers (no innerHTML anywhere)

const PROPERTY_KEYS = new Set(['value', 'checked', 'disabled', 'selected', 'readOnly', 'type']);

/**
 * Creates an HTML element. `props`: `class`, `testid` (data-testid), `dataset`, `on<event>`
 * handlers, DOM properties (value, checked, disabled...), anything else as an attribute.
 * Children: nodes, strings (as text), numbers, arrays, null/false (skipped).
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'testid') el.dataset.testid = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (PROPERTY_KEYS.has(key)) el[key] = value;
    else if (key === 'style' || key === 'innerHTML') throw new Error(`h(): ${key} is not allowed`);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  appendChildren(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element; attributes are set as given (`class` included). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'testid') el.setAttribute('data-testid', value);
    else el.setAttribute(key, String(value));
  }
  appendChildren(el, children);
  return el;
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An error line that can be shown and cleared (role=alert for screen readers). */
function errorBox(testid) {
  const el = h('p', { class: 'error', role: 'alert', testid, hidden: true });
  return {
    el,
    show(error) {
      el.textContent = error instanceof Error ? error.message : String(error);
      el.hidden = false;
    },
    clear() {
      el.textContent = '';
      el.hidden = true;
    },
  };
}

function card(title, props = {}, ...children) {
  return h('section', { class: 'card', ...props }, h('h2', {}, title), ...children);
}

function table(headers, tbody, props = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      props,
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((label) => h('th', { scope: 'col' }, label)),
        ),
      ),
      tbody,
    ),
  );
}

function emptyRow(columns, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: columns }, text));
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind ?? ''}`.trim() }, text);
}

function definitionList(pairs, props = {}) {
  return h(
    'dl',
    { class: 'facts', ...props },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== '')
      .map(([label, value, testid]) => [h('dt', {}, label), h('dd', { testid }, value)]),
  );
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** "TERMINAL_STATE_ACTIVE" -> "active" (the prefix is dropped when given or guessed). */
function enumLabel(value, prefix) {
  if (value === undefined || value === null || value === '') return '—';
  let text = String(value);
  if (prefix && text.startsWith(prefix)) text = text.slice(prefix.length);
  return text.toLowerCase().replaceAll('_', ' ');
}

/** Parses an RFC 3339 timestamp (nanoseconds allowed); null when absent or malformed. */
function parseTime(value) {
  if (!value) return null;
  const date = new Date(String(value).replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(date.getTime()) ? null : date;
}

function formatTime(value) {
  const date = parseTime(value);
  return date ? date.toLocaleString() : '—';
}

/** Time of day for today's timestamps, date and time otherwise. */
function formatShortTime(value) {
  const date = parseTime(value);
  if (!date) return '—';
  const today = new Date();
  return date.toDateString() === today.toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

/** Minor-unit digits of an ISO 4217 currency (2 when unknown). */
function currencyDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions()
      .maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** "5000", "EUR" -> "€50.00"; exact for any integer string (no floating point on the way). */
function formatAmount(minor, currency) {
  const text = String(minor ?? '0');
  if (!/^-?\d+$/.test(text)) return `${text} ${currency ?? ''}`.trim();
  const digits = currency ? currencyDigits(currency) : 2;
  const negative = text.startsWith('-');
  const padded = (negative ? text.slice(1) : text).padStart(digits + 1, '0');
  const whole = padded.slice(0, padded.length - digits);
  const decimal = `${negative ? '-' : ''}${whole}${digits ? `.${padded.slice(padded.length - digits)}` : ''}`;
  if (!currency) return decimal;
  try {
    return new Intl.NumberFormat(undefined, {
      style: 'currency',
      currency,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(decimal);
  } catch {
    return `${decimal} ${currency}`;
  }
}

/** A protobuf uint64 (JSON string or number, absent = 0) as a BigInt. */
function big(value) {
  try {
    return BigInt(value ?? 0);
  } catch {
    return 0n;
  }
}

function count(value) {
  return Number(value ?? 0) || 0;
}

/** A field by its JSON (lowerCamelCase) name or its proto (snake_case) name. */
function pick(object, camel, snake) {
  if (!object) return undefined;
  return object[camel] ?? (snake ? object[snake] : undefined);
}

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Builds a path from a template, each interpolated value URL-encoded as one segment. */
function path(strings, ...values) {
  return strings.reduce(
    (out, part, i) => out + part + (i < values.length ? encodeURIComponent(values[i]) : ''),
    '',
  );
}

/**
 * One call to the console server. `auth: false` sends no token (api/config); `token` sends
 * another token than the session's (the login check, before the session exists);
 * `sessionCheck: false` keeps a 401 from being taken as the session's token being refused.
 */
async function request(url, { method = 'GET', body, auth = true, token, sessionCheck = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (auth) headers.Authorization = `Bearer ${token ?? session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (error) {
    throw new ApiError(0, 'network', `Cannot reach the console server (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message =
      data && typeof data.message === 'string' && data.message
        ? data.message
        : `${response.status} ${response.statusText || 'error'}`;
    const error = new ApiError(response.status, data?.code ?? 'http', message);
    if (auth && sessionCheck && token === undefined && response.status === 401 && session.token)
      onUnauthorized(error);
    throw error;
  }
  if (text && data === null)
    throw new ApiError(response.status, 'bad_json', 'The server answered something that is not JSON.');
  return data ?? {};
}

/** A call to one service's API through the console's proxy. */
function svc(service, servicePath, options) {
  return request(`${API_BASE}svc/${service}${servicePath}`, options);
}

function has(service) {
  return config.services.has(service);
}

// ---------------------------------------------------------------------------------------------
// Page scope: timers that stop when the page is left

class Scope {
  constructor() {
    this.alive = true;
    this.timers = new Set();
  }

  /** Runs `task` now and again `ms` after each run ends (runs never overlap). */
  every(ms, task) {
    const tick = async () => {
      if (!this.alive) return;
      try {
        await task();
      } catch {
        // The task shows its own errors; a failed run must not stop the polling.
      }
      if (this.alive) this.later(ms, tick);
    };
    tick();
  }

  later(ms, task) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.alive) task();
    }, ms);
    this.timers.add(timer);
  }

  dispose() {
    this.alive = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Application shell: login, navigation, tenant switch

const root = document.getElementById('app');

const app = {
  scope: null,
  main: null,
  nav: null,
  banner: null,
  tenantBox: null,
};

const ROUTES = {
  estate: { title: 'Estate', service: TM, render: renderEstate },
  softpos: { title: 'SoftPOS', service: ATTESTATION, render: renderSoftpos },
  payments: { title: 'Payments', service: AUTHORIZATION, render: renderPayments },
  audit: { title: 'Audit', service: null, render: renderAudit },
};

function currentRoute() {
  const match = /^#\/([a-z]+)/.exec(location.hash);
  return match && ROUTES[match[1]] ? match[1] : 'estate';
}

function onUnauthorized(error) {
  if (!app.banner) return;
  showBanner(`The server refused the token: ${error.message} Log out and log in again.`);
}

function showBanner(message) {
  if (!app.banner) return;
  app.banner.text.textContent = message;
  app.banner.el.hidden = false;
}

async function start() {
  try {
    const answer = await request(`${API_BASE}config`, { auth: false });
    if (Array.isArray(answer.services)) config.services = new Set(answer.services);
    config.audit = answer.audit !== false;
    config.replay = answer.replay === true;
  } catch {
    // Without the config every page is offered; each shows its own error if unreachable.
  }
  window.addEventListener('hashchange', () => {
    if (app.main) renderPage();
  });
  if (session.token && session.tenant) {
    try {
      await svc(TM, path`/v1/tenants/${session.tenant}`);
      showApp();
      return;
    } catch (error) {
      session.clear();
      showLogin(error.message);
      return;
    }
  }
  showLogin();
}

function showLogin(message) {
  app.scope?.dispose();
  app.scope = null;
  app.main = null;
  app.banner = null;
  const error = errorBox('login-error');
  const token = h('input', {
    id: 'login-token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    testid: 'login-token',
  });
  const tenant = h('input', {
    id: 'login-tenant',
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    testid: 'login-tenant',
    value: session.tenant,
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, 'Log in');
  const form = h(
    'form',
    {
      class: 'login card',
      testid: 'login-form',
      onsubmit: async (event) => {
        event.preventDefault();
        error.clear();
        const tokenValue = token.value.trim();
        const tenantValue = tenant.value.trim();
        if (!tokenValue || !tenantValue) {
          error.show('Enter a token and a tenant id.');
          return;
        }
        submit.disabled = true;
        try {
          await svc(TM, path`/v1/tenants/${tenantValue}`, { token: tokenValue });
          session.start(tokenValue, tenantValue);
          if (!/^#\/[a-z]+/.test(location.hash)) history.replaceState(null, '', '#/estate');
          showApp();
        } catch (failure) {
          error.show(failure);
          submit.disabled = false;
        }
      },
    },
    h('h1', {}, 'mPOS operator console'),
    h('p', { class: 'muted' }, 'Log in with the platform operator’s token or a tenant API key.'),
    h('label', { for: 'login-token' }, 'Bearer token'),
    token,
    h('label', { for: 'login-tenant' }, 'Tenant id'),
    tenant,
    error.el,
    submit,
  );
  if (message) error.show(message);
  root.replaceChildren(h('div', { class: 'login-page' }, form));
  (session.tenant ? token : tenant).focus();
}

function showApp() {
  const navLinks = Object.entries(ROUTES).map(([key, route]) =>
    h('a', { href: `#/${key}`, testid: `nav-${key}`, dataset: { route: key } }, route.title),
  );
  const bannerText = h('span', {});
  const banner = h(
    'div',
    { class: 'banner', role: 'alert', testid: 'global-error', hidden: true },
    bannerText,
    h('button', { type: 'button', class: 'link', onclick: () => (banner.hidden = true) }, 'Dismiss'),
  );
  app.banner = { el: banner, text: bannerText };
  app.tenantBox = h('div', { class: 'tenant', testid: 'tenant-switcher' });
  app.nav = h('nav', { 'aria-label': 'Pages' }, navLinks);
  app.main = h('main', { id: 'page' });
  root.replaceChildren(
    h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'mPOS console'),
      app.nav,
      h('span', { class: 'spacer' }),
      app.tenantBox,
      h('button', { type: 'button', class: 'secondary', testid: 'logout', onclick: logout }, 'Log out'),
    ),
    banner,
    app.main,
  );
  renderTenantSwitcher();
  renderPage();
}

function logout() {
  session.clear();
  showLogin();
}

/** The tenant switcher: a select when the token may list tenants, a text field otherwise. */
async function renderTenantSwitcher() {
  const box = app.tenantBox;
  const label = h('span', { class: 'muted' }, 'Tenant');
  const textField = () => {
    const input = h('input', {
      type: 'text',
      value: session.tenant,
      testid: 'tenant-input',
      'aria-label': 'Tenant id',
      size: 14,
    });
    const go = () => switchTenant(input.value.trim(), () => (input.value = session.tenant));
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') go();
    });
    box.replaceChildren(
      label,
      input,
      h('button', { type: 'button', class: 'secondary', testid: 'tenant-switch', onclick: go }, 'Switch'),
    );
  };
  textField();
  let tenants;
  try {
    tenants = (await svc(TM, '/v1/tenants')).tenants;
  } catch {
    return; // A tenant API key may not list tenants: keep the text field.
  }
  if (!Array.isArray(tenants) || tenants.length === 0 || box !== app.tenantBox) return;
  const ids = tenants.map((tenant) => tenant.tenantId).filter(Boolean);
  if (!ids.includes(session.tenant)) ids.unshift(session.tenant);
  const names = new Map(tenants.map((tenant) => [tenant.tenantId, tenant.name]));
  const select = h(
    'select',
    { testid: 'tenant-select', 'aria-label': 'Tenant' },
    ids.map((id) =>
      h(
        'option',
        { value: id, selected: id === session.tenant },
        names.get(id) ? `${id} — ${names.get(id)}` : id,
      ),
    ),
  );
  select.addEventListener('change', () => switchTenant(select.value, () => (select.value = session.tenant)));
  box.replaceChildren(label, select);
}

async function switchTenant(tenant, revert) {
  if (!tenant || tenant === session.tenant) return;
  try {
    await svc(TM, path`/v1/tenants/${tenant}`);
  } catch (error) {
    showBanner(`Cannot switch to tenant ${tenant}: ${error.message}`);
    revert();
    return;
  }
  session.tenant = tenant;
  app.banner.el.hidden = true;
  renderPage();
}

function renderPage() {
  app.scope?.dispose();
  const scope = new Scope();
  app.scope = scope;
  const key = currentRoute();
  const route = ROUTES[key];
  for (const link of app.nav.querySelectorAll('a')) {
    const active = link.dataset.route === key;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${route.title} · mPOS console`;
  const page = h('div', { class: `page page-${key}`, testid: `page-${key}` });
  app.main.replaceChildren(page);
  if (route.service && !has(route.service)) {
    page.append(
      h('h1', {}, route.title),
      h('p', { class: 'notice' }, `The ${route.service} service is not reachable from this console.`),
    );
    return;
  }
  route.render(page, scope);
}

// ---------------------------------------------------------------------------------------------
// Estate: nodes, terminals, parameter status, tenant parameters editor

function renderEstate(page, scope) {
  const tenant = session.tenant;
  page.append(h('h1', {}, 'Estate ', h('span', { class: 'muted' }, `· ${tenant}`)));

  let nodes = [];
  let terminals = [];
  let status = null;
  const keySlots = new Map(); // terminal id -> ListKeySlotsResponse | Error

  // --- parameter status -----------------------------------------------------------------
  const statusSummary = h('p', { class: 'summary', testid: 'param-status-summary' }, 'Loading…');
  const progressFill = h('div', { class: 'fill' });
  const statusBody = h('tbody', {});
  const statusError = errorBox('param-status-error');
  const statusCard = card(
    'Parameter status',
    { testid: 'param-status' },
    statusSummary,
    h('div', { class: 'progress', 'aria-hidden': 'true' }, progressFill),
    statusError.el,
    table(['Terminal', 'In force', 'Installed', 'Status', 'Installed at'], statusBody, {
      testid: 'param-status-table',
    }),
  );

  // --- parameters editor ----------------------------------------------------------------
  const editor = parametersEditor(scope, tenant, () => latestVersion(status), refresh);

  // --- terminals and nodes --------------------------------------------------------------
  const terminalsBody = h('tbody', {});
  const terminalsError = errorBox('terminals-error');
  const terminalsCard = card(
    'Terminals',
    {},
    terminalsError.el,
    table(
      ['Terminal', 'Kind', 'State', 'Node', 'Parameters (installed / in force)', 'Key slots', 'Last seen'],
      terminalsBody,
      { testid: 'terminals-table' },
    ),
  );
  const nodesBody = h('tbody', {});
  const nodesError = errorBox('nodes-error');
  const nodesCard = card(
    'Merchants and stores',
    {},
    nodesError.el,
    table(['Node', 'Kind', 'Name', 'Parent', 'Status'], nodesBody, { testid: 'nodes-table' }),
  );

  page.append(h('div', { class: 'grid two' }, editor.el, statusCard), terminalsCard, nodesCard);

  function nodeName(id) {
    if (!id) return '—';
    if (id === tenant) return `${id} (tenant)`;
    const node = nodes.find((candidate) => candidate.nodeId === id);
    return node?.name ? `${node.name} (${id})` : id;
  }

  function renderStatus() {
    if (!status) return;
    const rows = Array.isArray(status.terminals) ? status.terminals : [];
    const total = count(status.total) || rows.length;
    const upToDate = count(status.upToDate);
    statusSummary.textContent = `${total} live terminal${total === 1 ? '' : 's'} · ${upToDate} up to date · ${count(status.behind)} behind`;
    progressFill.style.width = `${total ? Math.round((upToDate / total) * 100) : 0}%`;
    statusBody.replaceChildren(
      ...(rows.length
        ? rows.map((row) => {
            const current = String(big(row.currentVersion));
            const installed = String(big(row.installedVersion));
            return h(
              'tr',
              {
                testid: `param-status-${row.terminalId}`,
                dataset: {
                  terminalId: row.terminalId ?? '',
                  currentVersion: current,
                  installedVersion: installed,
                },
              },
              h('td', { class: 'mono' }, row.terminalId ?? '—'),
              h('td', { class: 'num' }, current),
              h('td', { class: 'num' }, installed === '0' ? 'none' : installed),
              h('td', {}, row.behind ? badge('behind', 'warn') : badge('acknowledged', 'ok')),
              h('td', {}, formatTime(row.installedAt)),
            );
          })
        : [emptyRow(5, 'No live terminals.')]),
    );
    editor.showVersion(latestVersion(status));
  }

  function renderTerminals() {
    const byTerminal = new Map((status?.terminals ?? []).map((row) => [row.terminalId, row]));
    terminalsBody.replaceChildren(
      ...(terminals.length
        ? terminals.map((terminal) => {
            const params = byTerminal.get(terminal.terminalId);
            return h(
              'tr',
              { testid: `terminal-row-${terminal.terminalId}` },
              h(
                'td',
                {},
                h('div', { class: 'mono' }, terminal.terminalId ?? '—'),
                terminal.label ? h('div', { class: 'muted small' }, terminal.label) : null,
              ),
              h('td', {}, enumLabel(terminal.kind, 'TERMINAL_KIND_')),
              h('td', {}, stateBadge(terminal.state)),
              h('td', {}, nodeName(terminal.parentId)),
              h('td', { dataset: { col: 'parameters' } }, parameterCell(params)),
              h('td', { dataset: { col: 'keys' } }, keySlotCell(terminal)),
              h('td', {}, formatTime(lastSeen(terminal, params))),
            );
          })
        : [emptyRow(7, 'No terminals.')]),
    );
  }

  function parameterCell(params) {
    if (!params) return '—';
    const installed = big(params.installedVersion);
    const current = big(params.currentVersion);
    return h(
      'span',
      {},
      `${installed === 0n ? 'none' : installed} / ${current} `,
      params.behind ? badge('behind', 'warn') : badge('acknowledged', 'ok'),
    );
  }

  function keySlotCell(terminal) {
    if (!has(KEY_INJECTION)) return '—';
    const slots = keySlots.get(terminal.terminalId);
    if (!slots || slots instanceof Error || !Array.isArray(slots.slots) || slots.slots.length === 0)
      return '—';
    return h(
      'ul',
      { class: 'plain' },
      slots.slots.map((slot) =>
        h(
          'li',
          {},
          h('span', { class: 'mono' }, slot.slot ?? '?'),
          slot.kcv ? h('span', { class: 'muted small' }, ` KCV ${slot.kcv}`) : null,
          slot.revoked ? [' ', badge('revoked', 'bad')] : null,
          Array.isArray(slot.alarms) && slot.alarms.length
            ? [' ', badge(`${slot.alarms.length} alarm(s)`, 'warn')]
            : null,
        ),
      ),
    );
  }

  function renderNodes() {
    nodesBody.replaceChildren(
      ...(nodes.length
        ? nodes.map((node) =>
            h(
              'tr',
              { testid: `node-row-${node.nodeId}` },
              h('td', { class: 'mono' }, node.nodeId ?? '—'),
              h('td', {}, enumLabel(node.kind, 'NODE_KIND_')),
              h('td', {}, node.name ?? ''),
              h('td', {}, nodeName(node.parentId)),
              h(
                'td',
                {},
                node.status === 'NODE_STATUS_CLOSED' ? badge('closed', 'muted') : badge('open', 'ok'),
              ),
            ),
          )
        : [emptyRow(5, 'No merchants or stores.')]),
    );
  }

  async function refresh() {
    const [terminalsAnswer, statusAnswer] = await Promise.allSettled([
      svc(TM, path`/v1/tenants/${tenant}/terminals`),
      svc(TM, path`/v1/tenants/${tenant}/parameter-status`),
    ]);
    if (!scope.alive) return;
    if (terminalsAnswer.status === 'fulfilled') {
      terminals = terminalsAnswer.value.terminals ?? [];
      terminalsError.clear();
    } else terminalsError.show(terminalsAnswer.reason);
    if (statusAnswer.status === 'fulfilled') {
      status = statusAnswer.value;
      statusError.clear();
      renderStatus();
    } else statusError.show(statusAnswer.reason);
    renderTerminals();
  }

  async function refreshNodes() {
    try {
      const answer = await svc(TM, path`/v1/tenants/${tenant}/nodes`);
      if (!scope.alive) return;
      nodes = answer.nodes ?? [];
      nodesError.clear();
    } catch (error) {
      if (scope.alive) nodesError.show(error);
    }
    renderNodes();
    renderTerminals();
  }

  /** Key slots of the active terminals (the others have none), at most 50, every 15 s. */
  async function refreshKeys() {
    const active = terminals.filter((terminal) => terminal.state === 'TERMINAL_STATE_ACTIVE').slice(0, 50);
    await Promise.all(
      active.map(async (terminal) => {
        try {
          keySlots.set(
            terminal.terminalId,
            await svc(KEY_INJECTION, path`/v1/tenants/${tenant}/terminals/${terminal.terminalId}/keys`),
          );
        } catch (error) {
          keySlots.set(terminal.terminalId, error);
        }
      }),
    );
    if (scope.alive) renderTerminals();
  }

  scope.every(2000, refresh);
  scope.every(10000, refreshNodes);
  if (has(KEY_INJECTION)) scope.later(500, () => scope.every(15000, refreshKeys));
  editor.load();
}

function stateBadge(state) {
  const label = enumLabel(state, 'TERMINAL_STATE_');
  const kind =
    {
      TERMINAL_STATE_ACTIVE: 'ok',
      TERMINAL_STATE_BOUND: 'info',
      TERMINAL_STATE_SUSPENDED: 'warn',
      TERMINAL_STATE_BLACKLISTED: 'bad',
    }[state] ?? 'muted';
  return badge(label, kind);
}

/** When the terminal was last heard of: its last parameter acknowledgement or last change. */
function lastSeen(terminal, params) {
  const installed = parseTime(params?.installedAt);
  const updated = parseTime(terminal.updatedAt);
  if (installed && updated) return installed > updated ? params.installedAt : terminal.updatedAt;
  return params?.installedAt ?? terminal.updatedAt;
}

/** The parameter version in force: the highest current version of the tenant's live terminals. */
function latestVersion(status) {
  const rows = status?.terminals ?? [];
  if (!rows.length) return null;
  return rows.reduce((max, row) => (big(row.currentVersion) > max ? big(row.currentVersion) : max), 0n);
}

/**
 * The tenant-level parameters editor: floor limits per currency, blocked BIN ranges, the
 * terminal action codes, the BIN allow-list and the blocked card tokens. Save PUTs the whole
 * parameters object as read, with what the editor shows replaced.
 */
function parametersEditor(scope, tenant, currentVersion, refreshStatus) {
  let stored = null; // the parameters as last read
  let floorLimits = []; // [{currency, amount}] as edited
  let binRanges = []; // [{low, high}] as edited

  const version = h('strong', { testid: 'parameters-version', dataset: { version: '' } }, '—');
  const floorBody = h('tbody', {});
  const binBody = h('tbody', {});
  const other = h('pre', { class: 'json', testid: 'parameters-other' });
  // Terminal action codes (EMV Book 3 §10.7): empty means not set here, inherited.
  const tacInput = (label, testid) =>
    h('input', { type: 'text', size: 12, maxlength: 10, placeholder: 'inherited', testid, 'aria-label': label });
  const tacDenial = tacInput('TAC-Denial', 'tac-denial');
  const tacOnline = tacInput('TAC-Online', 'tac-online');
  const tacDefault = tacInput('TAC-Default', 'tac-default');
  // The allow-list and the blocked card tokens, one entry per line.
  const allowed = h('textarea', {
    rows: 3,
    cols: 30,
    class: 'mono',
    placeholder: '400000-499999',
    testid: 'allowed-bins',
    'aria-label': 'Allowed BIN ranges, one low-high per line',
  });
  const tokens = h('textarea', {
    rows: 3,
    cols: 68,
    class: 'mono',
    placeholder: '64 hex digits per line',
    testid: 'blocked-tokens',
    'aria-label': 'Blocked card tokens, one per line',
  });
  const error = errorBox('parameters-error');
  const message = h('p', { class: 'success', testid: 'parameters-message', hidden: true });
  const save = h(
    'button',
    { type: 'button', class: 'primary', testid: 'parameters-save', onclick: () => submit() },
    'Save parameters',
  );

  const newCurrency = h('input', {
    type: 'text',
    placeholder: 'EUR',
    maxlength: 3,
    size: 4,
    testid: 'floor-limit-new-currency',
    'aria-label': 'New floor limit currency',
  });
  const newAmount = h('input', {
    type: 'text',
    inputmode: 'numeric',
    placeholder: 'minor units',
    size: 12,
    testid: 'floor-limit-new-amount',
    'aria-label': 'New floor limit amount',
  });
  const newLow = h('input', {
    type: 'text',
    inputmode: 'numeric',
    placeholder: '400000',
    size: 12,
    testid: 'bin-new-low',
    'aria-label': 'New blocked range, low',
  });
  const newHigh = h('input', {
    type: 'text',
    inputmode: 'numeric',
    placeholder: '400099',
    size: 12,
    testid: 'bin-new-high',
    'aria-label': 'New blocked range, high',
  });

  const el = card(
    'Tenant parameters',
    { testid: 'parameters-editor' },
    h('p', { class: 'summary' }, 'Version in force: ', version),
    h('h3', {}, 'Floor limits'),
    h('p', { class: 'muted small' }, 'Amounts in minor units of the currency (EMV tag 9F1B).'),
    table(['Currency', 'Amount (minor units)', '', ''], floorBody, {
      testid: 'floor-limits',
      class: 'compact',
    }),
    h(
      'div',
      { class: 'inline-form' },
      newCurrency,
      newAmount,
      h(
        'button',
        { type: 'button', class: 'secondary', testid: 'floor-limit-add', onclick: () => addFloorLimit() },
        'Add',
      ),
    ),
    h('h3', {}, 'Blocked BIN ranges'),
    table(['Low', 'High', ''], binBody, { testid: 'blocked-bins', class: 'compact' }),
    h(
      'div',
      { class: 'inline-form' },
      newLow,
      newHigh,
      h(
        'button',
        { type: 'button', class: 'secondary', testid: 'bin-add', onclick: () => addBinRange() },
        'Add',
      ),
    ),
    h('h3', {}, 'Terminal action codes'),
    h('p', { class: 'muted small' }, 'TVR masks, 10 hex digits each (EMV Book 3 §10.7); empty: inherited.'),
    h(
      'div',
      { class: 'inline-form' },
      h('label', {}, 'Denial ', tacDenial),
      h('label', {}, 'Online ', tacOnline),
      h('label', {}, 'Default ', tacDefault),
    ),
    h('h3', {}, 'Allowed BIN ranges (allow-list)'),
    h(
      'p',
      { class: 'muted small' },
      'One low-high range per line. Only cards in them are accepted; emptied, the list inherited from above is cleared.',
    ),
    allowed,
    h('h3', {}, 'Blocked cards'),
    h(
      'p',
      { class: 'muted small' },
      'Keyed card tokens (HMAC-SHA-256 of the PAN under the tenant key, 64 hex digits), one per line: never a PAN.',
    ),
    tokens,
    h('details', {}, h('summary', {}, 'Other parameters at this level (kept as they are)'), other),
    error.el,
    message,
    h('div', { class: 'actions' }, save),
  );

  function adopt(parameters) {
    stored = parameters ?? {};
    floorLimits = (stored.floorLimits ?? []).map((limit) => ({
      currency: limit.currency ?? '',
      amount: String(big(limit.amount)),
    }));
    binRanges = (stored.blockedBinRanges ?? []).map((range) => ({
      low: range.low ?? '',
      high: range.high ?? '',
    }));
    const codes = stored.terminalActionCodes ?? {};
    tacDenial.value = codes.denial ?? '';
    tacOnline.value = codes.online ?? '';
    tacDefault.value = codes.defaultCode ?? '';
    allowed.value = (stored.allowedBinRanges?.ranges ?? []).map((range) => `${range.low}-${range.high}`).join('\n');
    tokens.value = (stored.blockedCardTokens ?? []).map(base64ToHex).join('\n');
    const {
      floorLimits: _f,
      blockedBinRanges: _b,
      terminalActionCodes: _t,
      allowedBinRanges: _a,
      blockedCardTokens: _c,
      ...rest
    } = stored;
    other.textContent = Object.keys(rest).length
      ? JSON.stringify(rest, null, 2)
      : '(none set at the tenant level)';
    renderLists();
  }

  function renderLists() {
    floorBody.replaceChildren(
      ...(floorLimits.length
        ? floorLimits.map((limit) => {
            const hint = h(
              'span',
              { class: 'muted small' },
              /^\d+$/.test(limit.amount) ? formatAmount(limit.amount, limit.currency) : '',
            );
            const input = h('input', {
              type: 'text',
              inputmode: 'numeric',
              value: limit.amount,
              size: 12,
              testid: `floor-limit-${limit.currency}`,
              'aria-label': `Floor limit ${limit.currency}`,
            });
            input.addEventListener('input', () => {
              limit.amount = input.value.trim();
              hint.textContent = /^\d+$/.test(limit.amount)
                ? formatAmount(limit.amount, limit.currency)
                : 'digits only';
            });
            return h(
              'tr',
              {},
              h('td', { class: 'mono' }, limit.currency),
              h('td', {}, input),
              h('td', {}, hint),
              h(
                'td',
                {},
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'link',
                    testid: `floor-limit-remove-${limit.currency}`,
                    onclick: () => {
                      floorLimits = floorLimits.filter((candidate) => candidate !== limit);
                      renderLists();
                    },
                  },
                  'Remove',
                ),
              ),
            );
          })
        : [emptyRow(4, 'No floor limit at the tenant level.')]),
    );
    binBody.replaceChildren(
      ...(binRanges.length
        ? binRanges.map((range, index) => {
            const low = h('input', {
              type: 'text',
              inputmode: 'numeric',
              value: range.low,
              size: 12,
              testid: `bin-low-${index}`,
              'aria-label': `Blocked range ${index + 1}, low`,
            });
            const high = h('input', {
              type: 'text',
              inputmode: 'numeric',
              value: range.high,
              size: 12,
              testid: `bin-high-${index}`,
              'aria-label': `Blocked range ${index + 1}, high`,
            });
            low.addEventListener('input', () => (range.low = low.value.trim()));
            high.addEventListener('input', () => (range.high = high.value.trim()));
            return h(
              'tr',
              { testid: `bin-range-${index}` },
              h('td', {}, low),
              h('td', {}, high),
              h(
                'td',
                {},
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'link',
                    testid: `bin-remove-${index}`,
                    onclick: () => {
                      binRanges = binRanges.filter((candidate) => candidate !== range);
                      renderLists();
                    },
                  },
                  'Remove',
                ),
              ),
            );
          })
        : [emptyRow(3, 'No blocked BIN range at the tenant level.')]),
    );
  }

  function addFloorLimit() {
    error.clear();
    const currency = newCurrency.value.trim().toUpperCase();
    const amount = newAmount.value.trim();
    const problem =
      checkFloorLimit(currency, amount) ??
      (floorLimits.some((limit) => limit.currency === currency)
        ? `${currency} already has a floor limit.`
        : null);
    if (problem) {
      error.show(problem);
      return false;
    }
    floorLimits.push({ currency, amount });
    newCurrency.value = '';
    newAmount.value = '';
    renderLists();
    return true;
  }

  function addBinRange() {
    error.clear();
    const range = { low: newLow.value.trim(), high: newHigh.value.trim() };
    const problem = checkBinRange(range);
    if (problem) {
      error.show(problem);
      return false;
    }
    binRanges.push(range);
    newLow.value = '';
    newHigh.value = '';
    renderLists();
    return true;
  }

  async function load() {
    try {
      const answer = await svc(TM, path`/v1/tenants/${tenant}/parameters`);
      if (!scope.alive) return;
      adopt(answer);
      error.clear();
    } catch (failure) {
      if (scope.alive) error.show(`Cannot read the parameters: ${failure.message}`);
    }
  }

  async function submit() {
    error.clear();
    message.hidden = true;
    if (!stored) {
      error.show('The parameters have not been read yet.');
      return;
    }
    // Entries typed in the "add" rows but not added yet are part of the save.
    if ((newCurrency.value.trim() || newAmount.value.trim()) && !addFloorLimit()) return;
    if ((newLow.value.trim() || newHigh.value.trim()) && !addBinRange()) return;
    for (const limit of floorLimits) {
      const problem = checkFloorLimit(limit.currency, limit.amount);
      if (problem) return error.show(problem);
    }
    for (const range of binRanges) {
      const problem = checkBinRange(range);
      if (problem) return error.show(problem);
    }
    const codes = {};
    for (const [field, input, label] of [
      ['denial', tacDenial, 'TAC-Denial'],
      ['online', tacOnline, 'TAC-Online'],
      ['defaultCode', tacDefault, 'TAC-Default'],
    ]) {
      const value = input.value.trim().toUpperCase();
      if (value === '') continue;
      if (!/^[0-9A-F]{10}$/.test(value)) return error.show(`${label}: 10 hex digits, not “${value}”.`);
      codes[field] = value;
    }
    const allowList = [];
    for (const line of allowed.value.split('\n').map((entry) => entry.trim()).filter(Boolean)) {
      const [low = '', high = ''] = line.split('-').map((end) => end.trim());
      const problem = checkBinRange({ low, high });
      if (problem) return error.show(`Allowed ${problem}`);
      allowList.push({ low, high });
    }
    const blocked = [];
    for (const line of tokens.value.split('\n').map((entry) => entry.trim()).filter(Boolean)) {
      if (!/^[0-9a-fA-F]{64}$/.test(line)) return error.show('Blocked cards: 64 hex digits per token.');
      blocked.push(hexToBase64(line));
    }
    const body = {
      ...stored,
      floorLimits: floorLimits.map((limit) => ({ currency: limit.currency, amount: limit.amount })),
      blockedBinRanges: binRanges.map((range) => ({ low: range.low, high: range.high })),
      blockedCardTokens: blocked,
    };
    if (Object.keys(codes).length) body.terminalActionCodes = codes;
    else delete body.terminalActionCodes;
    // An allow-list emptied here clears the inherited one; never set, it stays unset.
    if (allowList.length || stored.allowedBinRanges) body.allowedBinRanges = { ranges: allowList };
    const before = currentVersion();
    save.disabled = true;
    try {
      const answer = await svc(TM, path`/v1/tenants/${tenant}/parameters`, { method: 'PUT', body });
      if (!scope.alive) return;
      adopt(answer);
      // The new version is the log position of this change: wait for the status to show it.
      let after = before;
      for (let attempt = 0; attempt < 20 && scope.alive; attempt += 1) {
        await refreshStatus();
        after = currentVersion();
        if (after !== null && (before === null || after > before)) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      if (!scope.alive) return;
      message.textContent =
        after !== null && (before === null || after > before)
          ? `Saved. Version ${after} is now in force; the terminals download it at their next check.`
          : 'Saved. (No live terminal: no version in force.)';
      message.hidden = false;
    } catch (failure) {
      if (scope.alive) error.show(failure);
    } finally {
      save.disabled = false;
    }
  }

  function showVersion(value) {
    const text = value === null ? '' : String(value);
    if (version.dataset.version === text) return;
    version.dataset.version = text;
    version.textContent = value === null ? '— (no live terminal)' : text;
  }

  return { el, load, showVersion };
}

/** Bytes in proto3 JSON (base64) as hex, and back. */
function base64ToHex(text) {
  return Array.from(atob(text), (char) => char.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}

function hexToBase64(hex) {
  return btoa(String.fromCharCode(...hex.match(/../g).map((pair) => parseInt(pair, 16))));
}

function checkFloorLimit(currency, amount) {
  if (!/^[A-Z]{3}$/.test(currency)) return `Currency: an ISO 4217 code of three letters, not “${currency}”.`;
  if (!/^\d+$/.test(amount)) return `Floor limit ${currency}: a whole number of minor units.`;
  if (big(amount) > 4294967295n) return `Floor limit ${currency}: at most 4294967295 (tag 9F1B is 4 bytes).`;
  return null;
}

function checkBinRange({ low, high }) {
  if (!/^\d{6,11}$/.test(low) || !/^\d{6,11}$/.test(high)) return 'BIN ranges: 6 to 11 digits at each end.';
  if (low.length !== high.length)
    return `BIN range ${low}–${high}: both ends need the same number of digits.`;
  if (low > high) return `BIN range ${low}–${high}: low is above high.`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// SoftPOS: attestation dashboard, device lookup, policy

function renderSoftpos(page, scope) {
  const tenant = session.tenant;
  page.append(h('h1', {}, 'SoftPOS ', h('span', { class: 'muted' }, `· ${tenant}`)));

  const counts = h('div', { class: 'counts', testid: 'softpos-counts' });
  const adoption = h('div', { class: 'chart', testid: 'adoption' });
  const distributions = h('div', { class: 'grid three' });
  const dashboardError = errorBox('dashboard-error');
  page.append(
    dashboardError.el,
    counts,
    card(
      'Adoption',
      {},
      h(
        'p',
        { class: 'muted small' },
        'Attestations per day by verdict; the line is the number of devices seen so far.',
      ),
      adoption,
    ),
    distributions,
    h('div', { class: 'grid two' }, deviceLookup(scope, tenant), policyEditor(scope, tenant)),
  );

  async function refresh() {
    let dashboard;
    try {
      dashboard = await svc(ATTESTATION, path`/v1/tenants/${tenant}/attestation/dashboard`);
    } catch (error) {
      if (scope.alive) dashboardError.show(error);
      return;
    }
    if (!scope.alive) return;
    dashboardError.clear();
    const verdicts = dashboard.verdicts ?? [];
    const verdictCount = (name) =>
      count(
        verdicts.find(
          (bucket) =>
            bucket.value === name || enumLabel(bucket.value, 'VERDICT_') === name.slice(8).toLowerCase(),
        )?.devices,
      );
    const devices = count(dashboard.devices);
    const active = count(dashboard.activeDevices);
    counts.replaceChildren(
      stat('Devices', devices, 'stat-devices'),
      stat('Active', active, 'stat-active'),
      stat('Re-attestation overdue', Math.max(devices - active, 0), 'stat-overdue'),
      stat('Allowed', verdictCount('VERDICT_ALLOW'), 'stat-allowed', 'ok'),
      stat('Flagged', verdictCount('VERDICT_FLAG'), 'stat-flagged', 'warn'),
      stat('Blocked', verdictCount('VERDICT_BLOCK'), 'stat-blocked', 'bad'),
    );
    adoption.replaceChildren(adoptionChart(dashboard.adoption ?? []));
    distributions.replaceChildren(
      card(
        'Verdicts',
        {},
        barChart(verdicts, 'dist-verdicts', (value) => enumLabel(value, 'VERDICT_')),
      ),
      card('Reasons', {}, barChart(dashboard.reasons ?? [], 'dist-reasons')),
      card('Android version', {}, barChart(dashboard.osVersions ?? [], 'dist-os-versions')),
      card('Security patch level', {}, barChart(dashboard.patchLevels ?? [], 'dist-patch-levels')),
      card('SDK version', {}, barChart(dashboard.sdkVersions ?? [], 'dist-sdk-versions')),
      card('App version', {}, barChart(dashboard.appVersions ?? [], 'dist-app-versions')),
    );
  }

  scope.every(5000, refresh);
}

function stat(label, value, testid, kind) {
  return h(
    'div',
    { class: `stat ${kind ?? ''}`.trim(), testid },
    h('div', { class: 'value' }, String(value)),
    h('div', { class: 'label' }, label),
  );
}

/** Stacked bars of attestations per day by verdict, and the cumulative devices as a line. */
function adoptionChart(days) {
  const width = 720;
  const height = 240;
  const margin = { top: 16, right: 48, bottom: 36, left: 44 };
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'adoption-chart',
    role: 'img',
    'aria-label': 'Attestations per day',
    testid: 'adoption-chart',
  });
  const sorted = [...days]
    .filter((day) => day && day.day)
    .sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0));
  if (!sorted.length) {
    svg.append(
      s(
        'text',
        { x: width / 2, y: height / 2, class: 'no-data', 'text-anchor': 'middle' },
        'No attestation yet',
      ),
    );
    return svg;
  }
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const maxBar = Math.max(1, ...sorted.map((day) => count(day.attestations)));
  let cumulative = 0;
  const totals = sorted.map((day) => (cumulative += count(day.newDevices)));
  const maxLine = Math.max(1, cumulative);
  const band = plotWidth / sorted.length;
  const barWidth = Math.max(2, Math.min(40, band * 0.7));
  const y = (value) => margin.top + plotHeight - (value / maxBar) * plotHeight;
  const yLine = (value) => margin.top + plotHeight - (value / maxLine) * plotHeight;

  // Axes and grid.
  for (const fraction of [0, 0.5, 1]) {
    const value = Math.round(maxBar * fraction);
    const at = y(value);
    svg.append(
      s('line', { x1: margin.left, x2: width - margin.right, y1: at, y2: at, class: 'grid-line' }),
      s('text', { x: margin.left - 6, y: at + 4, class: 'axis', 'text-anchor': 'end' }, String(value)),
      s(
        'text',
        {
          x: width - margin.right + 6,
          y: yLine(Math.round(maxLine * fraction)) + 4,
          class: 'axis line-axis',
        },
        String(Math.round(maxLine * fraction)),
      ),
    );
  }
  const labelEvery = Math.ceil(sorted.length / 8);
  sorted.forEach((day, index) => {
    const x = margin.left + index * band + (band - barWidth) / 2;
    const allowed = count(day.allowed);
    const flagged = count(day.flagged);
    const blocked = count(day.blocked);
    const other = Math.max(count(day.attestations) - allowed - flagged - blocked, 0);
    let top = margin.top + plotHeight;
    for (const [value, kind] of [
      [allowed, 'allowed'],
      [flagged, 'flagged'],
      [blocked, 'blocked'],
      [other, 'other'],
    ]) {
      if (!value) continue;
      const barHeight = Math.max(1, (value / maxBar) * plotHeight);
      top -= barHeight;
      svg.append(
        s(
          'rect',
          { x, y: top, width: barWidth, height: barHeight, class: `bar ${kind}`, 'data-day': day.day },
          s('title', {}, `${day.day}: ${value} ${kind}`),
        ),
      );
    }
    if (index % labelEvery === 0 || index === sorted.length - 1) {
      svg.append(
        s(
          'text',
          { x: x + barWidth / 2, y: height - margin.bottom + 16, class: 'axis', 'text-anchor': 'middle' },
          day.day.slice(5),
        ),
      );
    }
  });
  // Cumulative devices.
  const points = sorted.map((day, index) => [margin.left + index * band + band / 2, yLine(totals[index])]);
  svg.append(s('polyline', { points: points.map(([px, py]) => `${px},${py}`).join(' '), class: 'line' }));
  points.forEach(([px, py], index) =>
    svg.append(
      s(
        'circle',
        { cx: px, cy: py, r: 3.5, class: 'point' },
        s('title', {}, `${sorted[index].day}: ${totals[index]} devices`),
      ),
    ),
  );
  // Legend.
  const legend = [
    ['allowed', 'allowed'],
    ['flagged', 'flagged'],
    ['blocked', 'blocked'],
    ['devices', 'line-key'],
  ];
  legend.forEach(([label, kind], index) => {
    const x = margin.left + index * 90;
    svg.append(
      s('rect', { x, y: height - 12, width: 10, height: 10, class: `key ${kind}` }),
      s('text', { x: x + 14, y: height - 3, class: 'axis' }, label),
    );
  });
  return svg;
}

/** Horizontal bars, one per bucket ({value, devices}). */
function barChart(buckets, testid, label = (value) => value) {
  const rows = buckets.filter((bucket) => bucket && bucket.value !== undefined);
  const rowHeight = 24;
  const width = 340;
  const labelWidth = 116;
  const height = Math.max(1, rows.length) * rowHeight + 8;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'bar-chart', role: 'img', testid });
  if (!rows.length) {
    svg.append(
      s('text', { x: width / 2, y: height / 2 + 4, class: 'no-data', 'text-anchor': 'middle' }, 'No data'),
    );
    return svg;
  }
  const max = Math.max(1, ...rows.map((bucket) => count(bucket.devices)));
  const plot = width - labelWidth - 48;
  rows.forEach((bucket, index) => {
    const value = count(bucket.devices);
    const y = 4 + index * rowHeight;
    const text = String(label(bucket.value) || '(none)');
    svg.append(
      s(
        'text',
        { x: labelWidth - 6, y: y + 15, class: 'axis', 'text-anchor': 'end' },
        text.length > 18 ? `${text.slice(0, 17)}…` : text,
        s('title', {}, text),
      ),
      s(
        'rect',
        {
          x: labelWidth,
          y: y + 3,
          width: Math.max(2, (value / max) * plot),
          height: rowHeight - 8,
          class: 'bar',
        },
        s('title', {}, `${text}: ${value}`),
      ),
      s(
        'text',
        { x: labelWidth + Math.max(2, (value / max) * plot) + 6, y: y + 15, class: 'axis' },
        String(value),
      ),
    );
  });
  return svg;
}

function deviceLookup(scope, tenant) {
  const input = h('input', {
    type: 'text',
    placeholder: 'device id',
    testid: 'device-id',
    'aria-label': 'Device id',
    spellcheck: 'false',
  });
  const result = h('div', { testid: 'device-result' });
  const error = errorBox('device-error');
  const lookup = async (event) => {
    event.preventDefault();
    error.clear();
    result.replaceChildren();
    const id = input.value.trim();
    if (!id) return;
    try {
      const history = await svc(ATTESTATION, path`/v1/tenants/${tenant}/devices/${id}`);
      if (scope.alive) result.replaceChildren(deviceView(history));
    } catch (failure) {
      if (scope.alive) error.show(failure);
    }
  };
  return card(
    'Device lookup',
    {},
    h(
      'form',
      { class: 'inline-form', onsubmit: lookup },
      input,
      h('button', { type: 'submit', class: 'secondary', testid: 'device-lookup' }, 'Look up'),
    ),
    error.el,
    result,
  );
}

function deviceView(history) {
  const device = history.device ?? {};
  const findings = device.findings ?? [];
  const entries = history.entries ?? [];
  return h(
    'div',
    {},
    definitionList([
      ['Device', device.deviceId],
      ['Verdict', verdictBadge(device.verdict)],
      ['Policy version', device.policyVersion],
      ['First attested', formatTime(device.firstAttestedAt)],
      ['Last attested', formatTime(device.attestedAt)],
      ['Re-attest by', formatTime(device.reattestBy)],
      ['Android', device.osVersion],
      ['Patch level', device.osPatchLevel],
      ['SDK / app', [device.sdkVersion, device.appVersion].filter(Boolean).join(' / ')],
      ['Security level', device.securityLevel],
      ['Attestations', device.attestations],
      ['Re-attestation missed', device.reattestationMissed ? badge('yes', 'bad') : null],
    ]),
    findings.length
      ? h(
          'ul',
          { class: 'findings' },
          findings.map((finding) =>
            h(
              'li',
              {},
              badge(enumLabel(finding.action, 'RULE_ACTION_'), 'warn'),
              ' ',
              h('span', { class: 'mono' }, finding.code ?? ''),
              finding.detail ? ` — ${finding.detail}` : '',
            ),
          ),
        )
      : null,
    h('h3', {}, 'History'),
    table(
      ['#', 'When', 'Event', 'Actor', 'Verdict', 'Reasons', 'Policy'],
      h(
        'tbody',
        {},
        entries.length
          ? entries.map((entry) =>
              h(
                'tr',
                {},
                h('td', { class: 'num' }, entry.sequence ?? ''),
                h('td', {}, formatTime(entry.occurredAt)),
                h('td', {}, entry.eventType ?? ''),
                h('td', {}, entry.actor ?? ''),
                h('td', {}, entry.verdict ? verdictBadge(entry.verdict) : ''),
                h('td', {}, (entry.reasons ?? []).join(', ')),
                h('td', { class: 'num' }, entry.policyVersion ?? ''),
              ),
            )
          : emptyRow(7, 'No history.'),
      ),
      { testid: 'device-history' },
    ),
  );
}

function verdictBadge(verdict) {
  const kind = { VERDICT_ALLOW: 'ok', VERDICT_FLAG: 'warn', VERDICT_BLOCK: 'bad' }[verdict] ?? 'muted';
  return badge(enumLabel(verdict, 'VERDICT_'), kind);
}

/** The attestation policy as JSON in a textarea, saved with the version it was read at. */
function policyEditor(scope, tenant) {
  let version = '0';
  const versionEl = h('strong', { testid: 'policy-version' }, '—');
  const textarea = h('textarea', {
    rows: 14,
    spellcheck: 'false',
    testid: 'policy-json',
    'aria-label': 'Attestation policy (JSON)',
  });
  const comment = h('input', {
    type: 'text',
    class: 'wide',
    placeholder: 'comment (why the change)',
    testid: 'policy-comment',
    'aria-label': 'Comment',
  });
  const error = errorBox('policy-error');
  const message = h('p', { class: 'success', testid: 'policy-message', hidden: true });
  const save = h('button', { type: 'button', class: 'primary', testid: 'policy-save' }, 'Save policy');
  const reload = h('button', { type: 'button', class: 'secondary', testid: 'policy-reload' }, 'Reload');

  function adopt(answer) {
    version = String(big(answer.version));
    versionEl.textContent = version === '0' ? '0 (defaults)' : version;
    textarea.value = JSON.stringify(answer.policy ?? {}, null, 2);
  }

  async function load() {
    error.clear();
    try {
      const answer = await svc(ATTESTATION, path`/v1/tenants/${tenant}/attestation-policy`);
      if (scope.alive) adopt(answer);
    } catch (failure) {
      if (scope.alive) error.show(failure);
    }
  }

  save.addEventListener('click', async () => {
    error.clear();
    message.hidden = true;
    let policy;
    try {
      policy = JSON.parse(textarea.value);
    } catch (failure) {
      error.show(`The policy is not valid JSON: ${failure.message}`);
      return;
    }
    if (!policy || typeof policy !== 'object' || Array.isArray(policy)) {
      error.show('The policy must be a JSON object.');
      return;
    }
    save.disabled = true;
    try {
      const answer = await svc(ATTESTATION, path`/v1/tenants/${tenant}/attestation-policy`, {
        method: 'PUT',
        body: { policy, comment: comment.value.trim(), expectedVersion: version },
      });
      if (!scope.alive) return;
      adopt(answer);
      comment.value = '';
      message.textContent = `Published version ${version}: ${count(answer.devicesReevaluated)} device(s) re-evaluated, ${count(answer.verdictsChanged)} verdict(s) changed.`;
      message.hidden = false;
    } catch (failure) {
      if (scope.alive)
        error.show(
          failure.status === 409 ? `${failure.message} (Reload to edit the current version.)` : failure,
        );
    } finally {
      save.disabled = false;
    }
  });
  reload.addEventListener('click', () => {
    message.hidden = true;
    load();
  });
  load();
  return card(
    'Attestation policy',
    { testid: 'policy-editor' },
    h('p', { class: 'summary' }, 'Version: ', versionEl),
    textarea,
    comment,
    error.el,
    message,
    h('div', { class: 'actions' }, save, reload),
  );
}

// ---------------------------------------------------------------------------------------------
// Payments: live list, a payment's story, acquirer health

function renderPayments(page, scope) {
  const tenant = session.tenant;
  page.append(h('h1', {}, 'Payments ', h('span', { class: 'muted' }, `· ${tenant}`)));

  const rows = new Map(); // payment id -> {tr, signature}
  let selected = null;
  let listed = false; // whether a list was shown already (rows that appear later are highlighted)
  const tbody = h('tbody', {});
  const placeholder = emptyRow(8, 'Waiting for payments…');
  tbody.append(placeholder);
  const updated = h('span', { class: 'live', testid: 'payments-updated' }, 'connecting…');
  const listError = errorBox('payments-error');
  const story = h('section', { class: 'card story', testid: 'payment-story', hidden: true });
  const acquirers = acquirerHealth(scope, tenant);

  const layout = h(
    'div',
    { class: 'grid payments-layout' },
    card(
      'Live payments',
      {},
      h('p', { class: 'summary' }, updated),
      listError.el,
      table(['Time', 'Payment', 'Terminal', 'Amount', 'Card', 'Status', 'Acquirer', 'Code'], tbody, {
        testid: 'payments-table',
        class: 'clickable',
      }),
    ),
    story,
  );
  page.append(layout, acquirers);

  function cells(payment) {
    return [
      h(
        'td',
        { class: 'nowrap', dataset: { col: 'time' } },
        formatShortTime(payment.receivedAt ?? payment.decidedAt),
      ),
      h('td', { class: 'mono wrap', dataset: { col: 'id' } }, payment.paymentId),
      h('td', { class: 'mono', dataset: { col: 'terminal' } }, payment.terminalId ?? '—'),
      h(
        'td',
        { class: 'num nowrap', dataset: { col: 'amount' } },
        formatAmount(payment.amountMinor, payment.currency),
      ),
      h('td', { class: 'mono nowrap', dataset: { col: 'pan' } }, payment.maskedPan ?? '—'),
      h('td', { dataset: { col: 'status' } }, paymentStatusBadge(payment)),
      h('td', { class: 'mono', dataset: { col: 'acquirer' } }, payment.acquirerId ?? '—'),
      h('td', { class: 'mono', dataset: { col: 'response-code' } }, payment.responseCode ?? '—'),
    ];
  }

  /** Updates the rows in place (keyed by payment id) so a row being clicked stays put. */
  function renderRows(payments) {
    const seen = new Set();
    let previous = null;
    for (const payment of payments) {
      const id = payment?.paymentId;
      if (!id || seen.has(id)) continue;
      seen.add(id);
      let entry = rows.get(id);
      if (!entry) {
        const tr = h('tr', {
          testid: `payment-row-${id}`,
          tabindex: '0',
          class: listed ? 'fresh' : '',
          dataset: { paymentId: id },
          onclick: () => select(id),
          onkeydown: (event) => {
            if (event.key === 'Enter' || event.key === ' ') {
              event.preventDefault();
              select(id);
            }
          },
        });
        entry = { tr, signature: null };
        rows.set(id, entry);
      }
      const signature = JSON.stringify(payment);
      if (entry.signature !== signature) {
        entry.tr.replaceChildren(...cells(payment));
        entry.tr.dataset.status = payment.status ?? '';
        entry.signature = signature;
      }
      entry.tr.classList.toggle('selected', id === selected);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== entry.tr) tbody.insertBefore(entry.tr, wanted);
      previous = entry.tr;
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.tr.remove();
        rows.delete(id);
      }
    }
    listed = true;
    if (seen.size) placeholder.remove();
    else {
      placeholder.firstChild.textContent = 'No payments yet.';
      if (!placeholder.isConnected) tbody.append(placeholder);
    }
  }

  async function poll() {
    try {
      const answer = await svc(AUTHORIZATION, path`/v1/tenants/${tenant}/payments` + '?limit=50');
      if (!scope.alive) return;
      listError.clear();
      renderRows(Array.isArray(answer.payments) ? answer.payments : []);
      updated.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      updated.classList.remove('stale');
    } catch (error) {
      if (!scope.alive) return;
      listError.show(error);
      updated.classList.add('stale');
    }
  }

  let storyScope = null;
  function select(id) {
    selected = id;
    for (const [rowId, entry] of rows) entry.tr.classList.toggle('selected', rowId === id);
    storyScope?.dispose();
    const own = new Scope();
    storyScope = own;
    story.hidden = false;
    layout.classList.add('with-story');
    story.dataset.paymentId = id;
    story.dataset.state = 'loading';
    story.replaceChildren(
      h('h2', {}, 'Payment ', h('span', { class: 'mono' }, id)),
      h('p', { class: 'muted' }, 'Loading…'),
    );
    // Refresh while the payment is still moving; stop once it is final and routed.
    own.every(2000, async () => {
      const done = await loadStory(own, id);
      if (done) own.dispose();
    });
  }

  /** Loads and shows one payment's story; true once nothing will change any more. */
  async function loadStory(own, id) {
    let payment;
    try {
      payment = await svc(AUTHORIZATION, path`/v1/tenants/${tenant}/payments/${id}`);
    } catch (error) {
      if (own.alive && scope.alive) {
        story.dataset.state = 'error';
        story.replaceChildren(
          h('h2', {}, 'Payment ', h('span', { class: 'mono' }, id)),
          h('p', { class: 'error', role: 'alert' }, error.message),
        );
      }
      return error.status === 404 || error.status === 403;
    }
    // The payment's own events: the checks it passed and the HSM's work (best effort).
    let history = [];
    try {
      const recorded = await svc(AUTHORIZATION, path`/v1/tenants/${tenant}/payments/${id}/history`);
      history = recorded.events ?? [];
    } catch {
      history = [];
    }
    let routing = null;
    let routingError = null;
    if (has(ROUTING) && wasRouted(payment)) {
      try {
        routing = await svc(ROUTING, path`/v1/tenants/${tenant}/payments/${id}/routing`);
      } catch (error) {
        routingError = error;
      }
    }
    if (!own.alive || !scope.alive) return true;
    story.replaceChildren(...storyView(payment, routing, routingError, history));
    const final = FINAL_STATUSES.has(payment.status);
    story.dataset.state = final ? 'final' : 'pending';
    return final && (routing !== null || !wasRouted(payment) || routingError?.status === 404);
  }

  scope.every(1000, poll);
  const stop = scope.dispose.bind(scope);
  scope.dispose = () => {
    storyScope?.dispose();
    stop();
  };
}

function wasRouted(payment) {
  return (
    Boolean(payment.acquirerId) ||
    [
      'PAYMENT_STATUS_ROUTED',
      'PAYMENT_STATUS_APPROVED',
      'PAYMENT_STATUS_TIMED_OUT',
      'PAYMENT_STATUS_REVERSAL_PENDING',
      'PAYMENT_STATUS_REVERSED',
    ].includes(payment.status) ||
    ROUTED_DECLINES.has(payment.declineReason)
  );
}

function paymentStatusBadge(payment) {
  const status = payment.status;
  const kind =
    {
      PAYMENT_STATUS_APPROVED: 'ok',
      PAYMENT_STATUS_DECLINED: 'bad',
      PAYMENT_STATUS_TIMED_OUT: 'warn',
      PAYMENT_STATUS_REVERSAL_PENDING: 'warn',
      PAYMENT_STATUS_REVERSED: 'muted',
    }[status] ?? 'info';
  return badge(enumLabel(status, 'PAYMENT_STATUS_'), kind);
}

/** The story of one payment: its facts and a timeline from receipt to decision. */
function storyView(payment, routing, routingError, history = []) {
  const decided = pick(routing, 'decided');
  const attempts = pick(routing, 'attempts') ?? [];
  const reversal = pick(routing, 'reversal');
  const advice = pick(routing, 'advice');
  const events = [];

  events.push(
    timelineEvent(payment.receivedAt, 'Received', 'info', [
      [
        `${formatAmount(payment.amountMinor, payment.currency)} from terminal ${payment.terminalId ?? '?'}`,
        payment.maskedPan ? `card ${payment.maskedPan}` : null,
      ]
        .filter(Boolean)
        .join(' · '),
    ]),
  );

  // What authorization recorded between receipt and routing: its checks, then the card
  // data deciphered and tokenized inside the HSM.
  const recorded = (type) => history.find((entry) => entry.event?.['@type'] === `mpos.authorization.v1.${type}`);
  const checked = recorded('PaymentChecked');
  if (checked) {
    const facts = checked.event;
    events.push(
      timelineEvent(checked.occurredAt, 'Checks passed', 'ok', [
        [
          facts.merchantId ? `merchant ${facts.merchantId}` : null,
          facts.terminalGroupId ? `group ${facts.terminalGroupId}` : null,
          facts.merchantCategoryCode ? `MCC ${facts.merchantCategoryCode}` : null,
          facts.parametersVersion ? `parameters v${facts.parametersVersion}` : null,
        ]
          .filter(Boolean)
          .join(' · ') || 'terminal, parameters and limits',
        facts.attestationVerdict
          ? `attestation token ${facts.attestationTokenId ?? ''} · verdict ${facts.attestationVerdict}`
          : null,
      ].filter(Boolean)),
    );
  }
  const decrypted = recorded('CardDataDecrypted');
  if (decrypted) {
    const card = decrypted.event.card ?? {};
    events.push(
      timelineEvent(decrypted.occurredAt, 'Card data deciphered in the HSM', 'ok', [
        [card.brand, card.bin ? `BIN ${card.bin}` : null, card.lastFour ? `last four ${card.lastFour}` : null]
          .filter(Boolean)
          .join(' · '),
        decrypted.event.bdkKcv ? `BDK KCV ${decrypted.event.bdkKcv} · card token kept, PAN not` : null,
      ].filter(Boolean)),
    );
  }

  if (decided) {
    const candidates = pick(decided, 'candidates') ?? [];
    const eliminated = pick(decided, 'eliminated') ?? [];
    const explanation = pick(decided, 'explanation') ?? [];
    const ruleId = pick(decided, 'ruleId', 'rule_id');
    const noRoute = pick(decided, 'noRouteReason', 'no_route_reason');
    const cardFacts = [decided.brand, decided.bin ? `BIN ${decided.bin}` : null].filter(Boolean).join(' · ');
    events.push(
      timelineEvent(
        null,
        'Route decided',
        noRoute ? 'bad' : 'info',
        [
          pick(decided, 'usedDefault', 'used_default') || !ruleId
            ? 'default route'
            : h('span', {}, 'rule ', h('span', { class: 'mono' }, ruleId)),
          ` (rules version ${pick(decided, 'ruleVersion', 'rule_version') ?? '0'})`,
          cardFacts ? ` · ${cardFacts}` : null,
        ],
        [
          candidates.length
            ? h(
                'div',
                { testid: 'story-candidates' },
                h('span', { class: 'muted' }, 'Candidates: '),
                candidates.map((candidate, index) => [
                  index ? ', ' : '',
                  h('span', { class: 'mono' }, pick(candidate, 'acquirerId', 'acquirer_id') ?? '?'),
                  candidate.weight ? ` (weight ${candidate.weight})` : '',
                  candidate.probe ? ' (probe)' : '',
                ]),
              )
            : null,
          eliminated.length
            ? h(
                'div',
                {},
                h('span', { class: 'muted' }, 'Eliminated: '),
                eliminated.map((entry, index) => [
                  index ? '; ' : '',
                  h('span', { class: 'mono' }, pick(entry, 'acquirerId', 'acquirer_id') ?? '?'),
                  ` — ${entry.reason ?? ''}`,
                ]),
              )
            : null,
          explanation.length
            ? h(
                'ul',
                { class: 'why', testid: 'story-explanation' },
                explanation.map((line) => h('li', {}, line)),
              )
            : null,
          noRoute ? h('p', { class: 'error' }, `No route: ${noRoute}`) : null,
        ],
      ),
    );
  } else if (routingError && routingError.status !== 404) {
    events.push(timelineEvent(null, 'Routing', 'bad', [`cannot read the routing: ${routingError.message}`]));
  } else if (wasRouted(payment)) {
    events.push(timelineEvent(null, 'Routing', 'muted', ['no routing recorded yet']));
  }

  attempts.forEach((attempt, index) => {
    const sent = attempt.sent ?? {};
    const answer = attempt.answer;
    const acquirer = pick(sent, 'acquirerId', 'acquirer_id') ?? '?';
    events.push(
      timelineEvent(null, `Sent ${sent.mti ?? 'message'} to ${acquirer}`, 'info', [
        [
          `attempt ${sent.attempt ?? index + 1}`,
          sent.stan ? `STAN ${sent.stan}` : null,
          sent.rrn ? `RRN ${sent.rrn}` : null,
          pick(sent, 'transactionType', 'transaction_type')
            ? enumLabel(pick(sent, 'transactionType', 'transaction_type'), 'TRANSACTION_TYPE_')
            : null,
          pick(sent, 'entryMode', 'entry_mode')
            ? enumLabel(pick(sent, 'entryMode', 'entry_mode'), 'ENTRY_MODE_')
            : null,
          pick(sent, 'transmittedAt', 'transmitted_at')
            ? `transmitted ${pick(sent, 'transmittedAt', 'transmitted_at')}`
            : null,
        ]
          .filter(Boolean)
          .join(' · '),
      ]),
    );
    if (answer) {
      const outcome = answer.outcome;
      const kind =
        outcome === 'EXCHANGE_OUTCOME_APPROVED'
          ? 'ok'
          : outcome === 'EXCHANGE_OUTCOME_STORED'
            ? 'info'
            : 'bad';
      events.push(
        timelineEvent(null, `${acquirer} answered: ${enumLabel(outcome, 'EXCHANGE_OUTCOME_')}`, kind, [
          [
            answer.mti ? `MTI ${answer.mti}` : null,
            pick(answer, 'responseCode', 'response_code')
              ? `response code ${pick(answer, 'responseCode', 'response_code')}`
              : null,
            pick(answer, 'authCode', 'auth_code')
              ? `auth code ${pick(answer, 'authCode', 'auth_code')}`
              : null,
            pick(answer, 'durationMs', 'duration_ms') !== undefined
              ? `${pick(answer, 'durationMs', 'duration_ms')} ms`
              : null,
            answer.detail || null,
          ]
            .filter(Boolean)
            .join(' · '),
        ]),
      );
    } else if (FINAL_STATUSES.has(payment.status)) {
      events.push(timelineEvent(null, `No answer from ${acquirer}`, 'muted', ['none recorded']));
    } else {
      events.push(timelineEvent(null, `Waiting for ${acquirer}`, 'warn', ['no answer yet']));
    }
  });

  for (const [label, progress] of [
    ['Reversal', reversal],
    ['Completion advice', advice],
  ]) {
    if (!progress) continue;
    const queued = progress.queued ?? {};
    const acknowledged = progress.acknowledged;
    const next = Number(pick(progress, 'nextAttemptAtUs', 'next_attempt_at_us') ?? 0);
    events.push(
      timelineEvent(null, `${label} queued for ${pick(queued, 'acquirerId', 'acquirer_id') ?? '?'}`, 'warn', [
        [
          queued.reason || null,
          count(progress.failures)
            ? `${count(progress.failures)} failed deliver${count(progress.failures) === 1 ? 'y' : 'ies'}`
            : null,
          !acknowledged && next ? `next attempt ${new Date(next / 1000).toLocaleString()}` : null,
        ]
          .filter(Boolean)
          .join(' · ') || '—',
      ]),
    );
    if (acknowledged) {
      events.push(
        timelineEvent(null, `${label} acknowledged`, 'ok', [
          `response code ${pick(acknowledged, 'responseCode', 'response_code') ?? '—'} after ${acknowledged.attempts ?? 1} attempt(s)`,
        ]),
      );
    }
  }

  if (FINAL_STATUSES.has(payment.status) || payment.decidedAt) {
    events.push(
      timelineEvent(
        payment.decidedAt,
        `Decided: ${enumLabel(payment.status, 'PAYMENT_STATUS_')}`,
        payment.approved ? 'ok' : 'bad',
        [
          [
            payment.responseCode ? `response code ${payment.responseCode}` : null,
            payment.authCode ? `auth code ${payment.authCode}` : null,
            payment.declineReason && payment.declineReason !== 'DECLINE_REASON_UNSPECIFIED'
              ? enumLabel(payment.declineReason, 'DECLINE_REASON_')
              : null,
            payment.message || null,
          ]
            .filter(Boolean)
            .join(' · ') || '—',
        ],
      ),
    );
  } else {
    events.push(
      timelineEvent(null, `In progress: ${enumLabel(payment.status, 'PAYMENT_STATUS_')}`, 'warn', [
        'waiting for the decision',
      ]),
    );
  }

  return [
    h('h2', {}, 'Payment ', h('span', { class: 'mono' }, payment.paymentId ?? '')),
    definitionList([
      ['Status', paymentStatusBadge(payment), 'story-status'],
      ['Amount', formatAmount(payment.amountMinor, payment.currency), 'story-amount'],
      ['Terminal', payment.terminalId, 'story-terminal'],
      ['Card', payment.maskedPan, 'story-pan'],
      [
        'Acquirer',
        payment.acquirerId || pick(attempts[0]?.sent, 'acquirerId', 'acquirer_id'),
        'story-acquirer',
      ],
      ['STAN / RRN', [payment.stan, payment.rrn].filter(Boolean).join(' / ')],
      ['Response code', payment.responseCode],
      ['Auth code', payment.authCode],
      ['Received', formatTime(payment.receivedAt)],
      ['Decided', payment.decidedAt ? formatTime(payment.decidedAt) : null],
    ]),
    h('ol', { class: 'timeline', testid: 'story-timeline' }, events),
  ];
}

function timelineEvent(time, title, kind, lines, extra = []) {
  return h(
    'li',
    { class: `event ${kind}` },
    h(
      'div',
      { class: 'event-head' },
      h('strong', {}, title),
      time ? h('time', { datetime: time, class: 'muted small' }, formatTime(time)) : null,
    ),
    lines.length ? h('div', { class: 'event-body' }, lines) : null,
    extra,
  );
}

function acquirerHealth(scope, tenant) {
  const tbody = h('tbody', {}, emptyRow(7, 'Loading…'));
  const error = errorBox('acquirers-error');
  const element = card(
    'Acquirer health',
    {},
    error.el,
    table(['Acquirer', 'Name', 'Circuit', 'Errors', 'Time-outs', 'Requests', 'Why'], tbody, {
      testid: 'acquirers-table',
      class: 'compact',
    }),
  );
  if (!has(ROUTING)) {
    tbody.replaceChildren(emptyRow(7, 'The routing service is not reachable from this console.'));
    return element;
  }
  scope.every(5000, async () => {
    let list;
    try {
      list = (await svc(ROUTING, path`/v1/tenants/${tenant}/acquirers`)).acquirers ?? [];
    } catch (failure) {
      if (scope.alive) error.show(failure);
      return;
    }
    const health = await Promise.all(
      list.map((acquirer) =>
        svc(ROUTING, path`/v1/tenants/${tenant}/acquirers/${acquirer.acquirerId}/health`).catch(
          (failure) => failure,
        ),
      ),
    );
    if (!scope.alive) return;
    error.clear();
    tbody.replaceChildren(
      ...(list.length
        ? list.map((acquirer, index) => {
            const state = health[index];
            const failed = state instanceof Error;
            const circuit = failed ? null : state.to;
            const circuitKind =
              { HEALTH_STATE_CLOSED: 'ok', HEALTH_STATE_HALF_OPEN: 'warn', HEALTH_STATE_OPEN: 'bad' }[
                circuit
              ] ?? 'muted';
            const circuitLabel =
              {
                HEALTH_STATE_CLOSED: 'closed (healthy)',
                HEALTH_STATE_HALF_OPEN: 'half open',
                HEALTH_STATE_OPEN: 'open (out)',
              }[circuit] ?? enumLabel(circuit, 'HEALTH_STATE_');
            return h(
              'tr',
              { testid: `acquirer-row-${acquirer.acquirerId}` },
              h('td', { class: 'mono' }, acquirer.acquirerId ?? '?'),
              h(
                'td',
                {},
                acquirer.settings?.name ?? '',
                acquirer.settings?.disabled ? [' ', badge('disabled', 'muted')] : null,
              ),
              h('td', {}, failed ? badge('unknown', 'muted') : badge(circuitLabel, circuitKind)),
              h('td', { class: 'num' }, failed ? '—' : `${count(state.errorPercent)} %`),
              h('td', { class: 'num' }, failed ? '—' : `${count(state.timeoutPercent)} %`),
              h('td', { class: 'num' }, failed ? '—' : String(count(state.requests))),
              h('td', { class: 'small' }, failed ? state.message : (state.reason ?? '')),
            );
          })
        : [emptyRow(7, 'No acquirer configured.')]),
    );
  });
  return element;
}

// ---------------------------------------------------------------------------------------------
// Audit: verify every service's hash chain and checkpoints; replay the read models

function renderAudit(page, scope) {
  page.append(h('h1', {}, 'Audit'));
  if (!config.audit) {
    page.append(h('p', { class: 'notice' }, 'Audit verification is not offered by this server.'));
    return;
  }
  const { button, error, result } = auditCheck(scope, {
    name: 'audit',
    buttonId: 'audit-verify',
    label: 'Verify audit trail',
    running: 'Verifying every service’s event log…',
    path: 'audit/verify',
    view: auditView,
    outcome: (answer) => ({ intact: String(answer.intact === true) }),
  });
  page.append(
    card(
      'Audit trail',
      {},
      h(
        'p',
        { class: 'muted' },
        'Checks each service’s event log: the hash chain from the first event and the signed checkpoints. Needs the platform operator’s token.',
      ),
      h('div', { class: 'actions' }, button),
      error.el,
      result,
    ),
  );
  if (config.replay) page.append(replayCard(scope));
}

// The read models' replay: each service's read models rebuilt from its log into fresh copies
// and compared, digest against digest, with the live ones.
function replayCard(scope) {
  const { button, error, result } = auditCheck(scope, {
    name: 'replay',
    buttonId: 'audit-replay',
    label: 'Replay read models',
    running: 'Replaying every read model from its log…',
    path: 'audit/replay',
    view: replayView,
    outcome: (answer) => ({ identical: String(answer.identical === true) }),
  });
  return card(
    'Read models',
    {},
    h(
      'p',
      { class: 'muted' },
      'Rebuilds each read model from its service’s log into a fresh copy and compares it with the live one at the same position (SHA-256 over every document). Needs the platform operator’s token.',
    ),
    h('div', { class: 'actions' }, button),
    error.el,
    result,
  );
}

function replayView(answer) {
  const services = Array.isArray(answer.services) ? answer.services : [];
  const rows = services.flatMap((service) =>
    (Array.isArray(service.readModels) ? service.readModels : []).map((model) => ({ service, model })),
  );
  const identical = answer.identical === true && rows.every(({ model }) => model.identical === true);
  const short = (digest) => (typeof digest === 'string' ? `${digest.slice(0, 16)}…` : '?');
  return [
    h(
      'div',
      { class: `verdict ${identical ? 'ok' : 'bad'}`, testid: 'replay-banner' },
      identical ? 'Every read model equals its replay' : 'A read model DIFFERS from its replay',
    ),
    table(
      ['Service', 'Read model', 'Result', 'Position', 'Documents (live / replayed)', 'Digest (live)', 'Digest (replayed)'],
      h(
        'tbody',
        {},
        rows.length
          ? rows.map(({ service, model }) =>
              h(
                'tr',
                {
                  testid: `replay-model-${model.name}`,
                  dataset: { identical: String(model.identical === true) },
                  class: model.identical === true ? '' : 'bad-row',
                },
                h('td', {}, service.service ?? '?'),
                h('td', {}, model.name ?? '?'),
                h('td', {}, model.identical === true ? badge('identical', 'ok') : badge('DIFFERS', 'bad')),
                h('td', { class: 'num' }, String(model.position ?? 0)),
                h(
                  'td',
                  { class: 'num' },
                  `${model.live?.documents ?? 0} / ${model.replayed?.documents ?? 0}`,
                ),
                h('td', { class: 'mono', title: model.live?.digest ?? '' }, short(model.live?.digest)),
                h('td', { class: 'mono', title: model.replayed?.digest ?? '' }, short(model.replayed?.digest)),
              ),
            )
          : emptyRow(7, 'No read model to replay.'),
      ),
      { testid: 'replay-table' },
    ),
  ];
}

// One of the audit page's checks: a button that POSTs `path` with the operator's token and
// shows the answer with `view`; the result element's data-state is idle, running, done or
// error, and `outcome(answer)` adds to its dataset when done.
function auditCheck(scope, { name, buttonId, label, running, path, view, outcome }) {
  const result = h('div', { testid: `${name}-result`, dataset: { state: 'idle' } });
  const error = errorBox(`${name}-error`);
  const button = h('button', { type: 'button', class: 'primary', testid: buttonId }, label);
  button.addEventListener('click', async () => {
    error.clear();
    button.disabled = true;
    result.dataset.state = 'running';
    result.replaceChildren(h('p', { class: 'muted' }, running));
    try {
      // A tenant API key is refused here (401/403): that is not the session failing.
      const answer = await request(`${API_BASE}${path}`, { method: 'POST', sessionCheck: false });
      if (!scope.alive) return;
      result.replaceChildren(...view(answer));
      result.dataset.state = 'done';
      Object.assign(result.dataset, outcome(answer));
    } catch (failure) {
      if (!scope.alive) return;
      result.replaceChildren();
      result.dataset.state = 'error';
      error.show(failure);
    } finally {
      button.disabled = false;
    }
  });
  return { button, error, result };
}

function auditView(answer) {
  const services = Array.isArray(answer.services) ? answer.services : [];
  const intact = answer.intact === true && services.every((service) => service.intact === true);
  return [
    h(
      'div',
      { class: `verdict ${intact ? 'ok' : 'bad'}`, testid: 'audit-banner' },
      intact ? 'Audit trail intact' : 'Audit trail NOT intact',
    ),
    table(
      ['Service', 'Result', 'Events checked', 'Checkpoints checked', 'Last position', 'Finding'],
      h(
        'tbody',
        {},
        services.length
          ? services.map((service) => {
              const finding = service.finding;
              return h(
                'tr',
                {
                  testid: `audit-service-${service.service}`,
                  dataset: { intact: String(service.intact === true) },
                  class: service.intact === true ? '' : 'bad-row',
                },
                h('td', {}, service.service ?? '?'),
                h('td', {}, service.intact === true ? badge('intact', 'ok') : badge('NOT intact', 'bad')),
                h('td', { class: 'num' }, String(service.eventsChecked ?? 0)),
                h('td', { class: 'num' }, String(service.checkpointsChecked ?? 0)),
                h('td', { class: 'num' }, String(service.lastPosition ?? 0)),
                h(
                  'td',
                  { class: finding ? 'finding' : 'muted' },
                  finding
                    ? `${enumLabel(finding.kind)} at position ${finding.position ?? '?'}: ${finding.message ?? ''}`
                    : 'none',
                ),
              );
            })
          : emptyRow(6, 'No service answered.'),
      ),
      { testid: 'audit-table' },
    ),
  ];
}

// ---------------------------------------------------------------------------------------------

start();
