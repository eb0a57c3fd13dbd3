// What both pages share: the credential (sessionStorage, sent only as `Authorization: Bearer`
// to this origin's /api, never in a URL), the login form, DOM building without markup strings,
// sections that say "not available here" instead of breaking, and polling.

const KEY = "aragora.console.key";

export function credential() {
  return sessionStorage.getItem(KEY);
}

export function logout() {
  sessionStorage.removeItem(KEY);
  location.reload();
}

/// An element: `attrs` are properties (`onclick`, `className`, `textContent`, `hidden`...) or,
/// for names with a dash or `for`/`role`, attributes; children are nodes or text.
export function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && !name.includes("-") && !(node instanceof SVGElement) && name !== "role") {
      node[name] = value;
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/// A state as text with a shape and colour beside it: never colour alone.
export function badge(text, kind) {
  const mark = { ok: "\u2714", warn: "\u25B2", bad: "\u2716", info: "\u25CF" }[kind] ?? "\u25CF";
  return el("span", { className: `badge ${kind}` }, el("span", { "aria-hidden": "true" }, mark), ` ${text}`);
}

export class ApiError extends Error {
  constructor(status, body, path) {
    super(body?.error?.message ?? `${path} answered ${status}`);
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

/// Calls this origin's API with the credential; the parsed JSON, or an ApiError.
/// `also`: statuses whose body is an answer too (a health check's 503 says what is down).
export async function api(path, { method = "GET", body, also = [] } = {}) {
  const headers = { accept: "application/json" };
  const key = credential();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, { error: { message: `aragora did not answer (${err.message})` } }, path);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: { message: text.slice(0, 200) } };
  }
  if (!response.ok && !also.includes(response.status)) throw new ApiError(response.status, parsed, path);
  return parsed;
}

/// What a section shows when an endpoint failed: optional endpoints (404, 501, 502, 503) are
/// "not available here", a refusal says so, anything else is an error; always as text.
export function failure(err) {
  const message = err instanceof ApiError ? err.message : String(err);
  if (err instanceof ApiError && [404, 501, 502, 503].includes(err.status)) {
    return el("p", { className: "unavailable" }, badge("not available here", "info"), ` ${err.path}: ${message}`);
  }
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return el("p", { className: "unavailable" }, badge("refused", "bad"), ` ${err.path}: ${message}`);
  }
  return el("p", { className: "error", role: "alert" }, badge("error", "bad"), ` ${message}`);
}

/// Replaces a container's children.
export function fill(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/// A table: `columns` are headings, `rows` arrays of cells (nodes or text).
export function table(columns, rows, caption) {
  return el(
    "div",
    { className: "scroll" },
    el(
      "table",
      {},
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => el("td", {}, cell ?? ""))))),
    ),
  );
}

/// Runs `task` now and every `ms` while the page is visible, never two at once.
export function poll(task, ms) {
  let running = false;
  const run = async () => {
    if (running || document.hidden) return;
    running = true;
    try {
      await task();
    } finally {
      running = false;
    }
  };
  run();
  document.addEventListener("visibilitychange", run);
  return setInterval(run, ms);
}

/// A container refreshed by `render` (which returns its nodes) every `ms`; a failure is shown
/// in place of the content and the next round tries again. The focused control (by its
/// `data-focus`) keeps the focus across refreshes, so a keyboard user is not thrown out.
/// Returns a function that refreshes at once.
export function live(container, ms, render) {
  const body = typeof container === "string" ? document.querySelector(`#${container} .body`) : container;
  const refresh = async () => {
    let nodes;
    try {
      nodes = await render();
    } catch (err) {
      nodes = failure(err);
    }
    const focused = body.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
    fill(body, nodes);
    if (focused) body.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
  };
  poll(refresh, ms);
  return refresh;
}

export function ago(at) {
  if (!at) return "never";
  const seconds = Math.round((Date.now() - new Date(at).getTime()) / 1000);
  return `${duration(Math.max(0, seconds))} ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return `${Math.round(seconds * 10) / 10} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function percent(ratio, digits = 2) {
  return ratio === null || ratio === undefined ? "-" : `${(ratio * 100).toFixed(digits)}%`;
}

/// Asks for a key unless one is kept, checks it with /api/auth/me and hands `start` the
/// caller; a key the API refuses is forgotten and the form says why.
export async function signIn(start) {
  const login = document.getElementById("login");
  const who = document.getElementById("who");
  const form = () => {
    const input = el("input", {
      id: "key",
      type: "password",
      name: "key",
      autocomplete: "off",
      required: true,
      spellcheck: false,
    });
    const problem = el("p", { className: "error", role: "alert", hidden: true });
    const submit = async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      const ok = await check(problem);
      if (!ok) input.focus();
    };
    fill(
      login,
      el(
        "form",
        { className: "login", onsubmit: submit },
        el("h2", {}, "Sign in"),
        el(
          "p",
          {},
          "Paste an API key or token: the admin key ",
          el("code", {}, "aragora up"),
          " printed (also in ",
          el("code", {}, "data/admin.key"),
          ") or any other. It is kept in this tab only and sent only to this server.",
        ),
        el("label", { for: "key" }, "API key or token"),
        input,
        el("button", { type: "submit" }, "Sign in"),
        problem,
      ),
    );
    input.focus();
  };
  const check = async (problem) => {
    let me;
    try {
      me = await api("/api/auth/me");
    } catch (err) {
      sessionStorage.removeItem(KEY);
      if (problem) {
        problem.textContent =
          err.status === 401 ? `That key was refused: ${err.message}` : `Cannot sign in: ${err.message}`;
        problem.hidden = false;
      } else form();
      return false;
    }
    fill(login);
    fill(
      who,
      el("span", {}, `Signed in as ${me.subject} (role ${me.role})`),
      el("button", { type: "button", className: "secondary", onclick: logout }, "Sign out"),
    );
    document.getElementById("nav").hidden = false;
    start(me);
    return true;
  };
  if (credential()) await check(null);
  else form();
}
