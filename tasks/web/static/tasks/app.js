// The task list of the web app: REST API for reads and changes, /ws/sync/ for live updates.
//
// One source of truth in the page: `tasks` (id -> task object). Everything that changes it
// (the list load, our own API responses, socket messages, catch-up) goes through `applyChange`,
// which drops anything whose version is not newer than what the page has. So duplicates and
// out-of-order messages are harmless, and the socket may be lossy: after every (re)connect the
// page asks GET /api/sync/?since=<cursor> for what it may have missed. When the server no longer
// keeps the changes after our cursor (410 Gone: the sync log keeps 14 days), the page loads its
// list afresh instead and continues from the cursor the 410 gives.
//
// Every write of an existing task carries `If-Match: "<version the page showed>"`: a 412 answers
// with the newer task, which the page applies and offers next to the user's unsaved change
// (CONTRACT.md section 7), so an edit made from a stale screen never silently overwrites another.

import { attachQuickAdd } from "./quickadd.js";

const config = JSON.parse(document.getElementById("app-config").textContent);
const zone = config.timezone;
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// REST API

class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `Request failed (${status})`);
    this.status = status;
    this.body = body || {};
  }
}

function csrfToken() {
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
}

// `version`: the task version the change was made from, sent as If-Match. `keepalive`: the
// request outlives the page (a deferred delete sent as the page goes away).
function requestInit({ method = "GET", body, version, keepalive = false }) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (version !== undefined) headers["If-Match"] = `"${version}"`;
  return { method, headers, keepalive, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) };
}

async function api(path, options = {}) {
  const response = await fetch(path, requestInit(options));
  if (response.status === 401) {
    location.assign(`${config.loginUrl}?next=/`);
    throw new ApiError(401, {});
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function allPages(path) {
  const items = [];
  let url = path;
  while (url) {
    const page = await api(url);
    if (Array.isArray(page)) return page;
    items.push(...page.results);
    url = page.next ? new URL(page.next, location.href).pathname + new URL(page.next, location.href).search : null;
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Time, in the user's zone (not the browser's: they may differ)

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { timeZone: zone, dateStyle: "medium", timeStyle: "short" });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeZone: zone, timeStyle: "short" });
const partsFormat = new Intl.DateTimeFormat("en-US", {
  timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
});

function zonedParts(date) {
  const parts = Object.fromEntries(partsFormat.formatToParts(date).map(({ type, value }) => [type, value]));
  return { year: +parts.year, month: +parts.month, day: +parts.day, hour: +parts.hour, minute: +parts.minute };
}

const pad = (n) => String(n).padStart(2, "0");

// "2025-12-20T18:00" (a datetime-local value) of an instant, in the user's zone.
function toLocalInput(iso) {
  if (!iso) return "";
  const p = zonedParts(new Date(iso));
  return `${p.year}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}`;
}

// The instant of a wall-clock time in the user's zone (the inverse of toLocalInput).
function fromLocalInput(value) {
  const [date, time] = value.split("T");
  const [y, mo, d] = date.split("-").map(Number);
  const [h, mi] = time.split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  let instant = wall;
  for (let i = 0; i < 2; i++) {  // twice: the offset may differ on either side of a DST change
    const p = zonedParts(new Date(instant));
    instant = wall - (Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - instant);
  }
  return new Date(instant);
}

function dayKey(date) {
  const p = zonedParts(date);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

function describeDue(iso) {
  const due = new Date(iso);
  const today = dayKey(new Date());
  const tomorrow = dayKey(new Date(Date.now() + 864e5));
  const key = dayKey(due);
  if (key === today) return `Today ${timeFormat.format(due)}`;
  if (key === tomorrow) return `Tomorrow ${timeFormat.format(due)}`;
  return dateTimeFormat.format(due);
}

// ---------------------------------------------------------------------------------------------
// Recurrence presets <-> RRULE bodies

const WEEKDAY_CODES = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
const WEEKDAY_NAMES = { MO: "Mon", TU: "Tue", WE: "Wed", TH: "Thu", FR: "Fri", SA: "Sat", SU: "Sun" };

function parseRule(rule) {
  return Object.fromEntries(rule.split(";").filter(Boolean).map((part) => {
    const [key, value = ""] = part.split("=");
    return [key.toUpperCase(), value.toUpperCase()];
  }));
}

function presetOf(rule) {
  if (!rule) return { preset: "", days: [] };
  const parts = parseRule(rule);
  const keys = Object.keys(parts).sort().join(",");
  if (keys === "FREQ" && parts.FREQ === "DAILY") return { preset: "daily", days: [] };
  if (keys === "FREQ" && parts.FREQ === "MONTHLY") return { preset: "monthly", days: [] };
  if (keys === "BYDAY,FREQ" && parts.FREQ === "WEEKLY") {
    const days = parts.BYDAY.split(",");
    if (days.every((day) => WEEKDAY_CODES.includes(day))) {
      const weekdays = days.length === 5 && ["MO", "TU", "WE", "TH", "FR"].every((day) => days.includes(day));
      return { preset: weekdays ? "weekdays" : "weekly", days };
    }
  }
  return { preset: "custom", days: [] };
}

function ruleOf(preset, days, custom) {
  switch (preset) {
    case "daily": return "FREQ=DAILY";
    case "weekdays": return "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR";
    case "weekly": return `FREQ=WEEKLY;BYDAY=${WEEKDAY_CODES.filter((day) => days.includes(day)).join(",")}`;
    case "monthly": return "FREQ=MONTHLY";
    case "custom": return custom.trim() || null;
    default: return null;
  }
}

function describeRule(rule) {
  const { preset, days } = presetOf(rule);
  return {
    daily: "Every day",
    weekdays: "Every weekday",
    weekly: `Weekly on ${days.map((day) => WEEKDAY_NAMES[day]).join(", ")}`,
    monthly: "Every month",
  }[preset] || rule;
}

// ---------------------------------------------------------------------------------------------
// The page's state

const tasks = new Map();         // id -> task object (CONTRACT.md section 2)
const deletedIds = new Set();    // deletion is final: nothing may bring a deleted task back
const notifications = new Map(); // id -> notification
let syncCursor = config.syncCursor;
const recentlyChanged = new Set(); // ids changed by another client, highlighted once

// Apply one change; false when it is stale (not newer than what the page has) or a duplicate.
function applyChange(changeType, task, { remote = false } = {}) {
  if (deletedIds.has(task.id)) return false;
  const known = tasks.get(task.id);
  if (known && known.version >= task.version) return false;
  if (changeType === "deleted") {
    tasks.delete(task.id);
    deletedIds.add(task.id);
  } else {
    tasks.set(task.id, task);
    if (remote) recentlyChanged.add(task.id);
  }
  scheduleRender();
  return true;
}

function applySyncEvent(event, options) {
  if (event?.event_type !== "sync.task_changed") return false;
  return applyChange(event.data.change_type, event.data.task, options);
}

// ---------------------------------------------------------------------------------------------
// Rendering the list

const filters = {
  search: $("search"), priority: $("filter-priority"), tag: $("filter-tag"), due: $("filter-due"), sort: $("sort"),
};

const isOverdue = (task, now = new Date()) => Boolean(task.due_date) && !task.completed && new Date(task.due_date) < now;

// The views. A finished occurrence of a recurring series is a completed task, so only
// "Completed" shows it. Today includes what is overdue; Upcoming is grouped by day.
const VIEWS = {
  today: { label: "Today", empty: "Nothing due today.", shows: (task) => !task.completed && Boolean(task.due_date) && dayKey(new Date(task.due_date)) <= dayKey(new Date()) },
  upcoming: { label: "Upcoming", empty: "Nothing scheduled from today on.", shows: (task) => !task.completed && Boolean(task.due_date) && dayKey(new Date(task.due_date)) >= dayKey(new Date()) },
  open: { label: "All open", empty: "Nothing open. Add a task above.", shows: (task) => !task.completed },
  completed: { label: "Completed", empty: "No completed tasks yet.", shows: (task) => task.completed },
};
let view = "open";

function matches(task) {
  if (pendingDeletes.has(task.id) || !VIEWS[view].shows(task)) return false;
  const search = filters.search.value.trim().toLowerCase();
  if (search && !`${task.title}\n${task.description}`.toLowerCase().includes(search)) return false;
  if (filters.priority.value && task.priority !== Number(filters.priority.value)) return false;
  if (filters.tag.value && !task.tags.includes(filters.tag.value)) return false;
  const due = filters.due.value;
  if (due === "none") return !task.due_date;
  if (due && !task.due_date) return false;
  if (due === "overdue") return isOverdue(task);
  if (due === "today") return dayKey(new Date(task.due_date)) === dayKey(new Date());
  if (due === "week") {
    const day = dayKey(new Date(task.due_date));  // YYYY-MM-DD strings compare like dates
    return day >= dayKey(new Date()) && day <= dayKey(new Date(Date.now() + 7 * 864e5));
  }
  return true;
}

function compare(a, b) {
  const ordering = filters.sort.value;
  const descending = ordering.startsWith("-");
  const field = ordering.replace("-", "");
  const direction = descending ? -1 : 1;
  if (field === "due_date") {
    // Tasks without a due date go last either way, like the API's ordering.
    if (!a.due_date || !b.due_date) return (a.due_date ? -1 : 0) + (b.due_date ? 1 : 0) || compareCreated(a, b);
    return direction * (new Date(a.due_date) - new Date(b.due_date)) || compareCreated(a, b);
  }
  if (field === "priority") return direction * (a.priority - b.priority) || compareCreated(a, b);
  if (field === "title") return a.title.localeCompare(b.title) || compareCreated(a, b);
  return direction * (new Date(a.created_at) - new Date(b.created_at));
}

const compareCreated = (a, b) => new Date(b.created_at) - new Date(a.created_at);

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child != null));
  return node;
}

// Small inline icons (no icon font or emoji font needed).
const ICON_PATHS = {
  calendar: "M7 2v2H5a2 2 0 0 0-2 2v13a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2h-2V2h-2v2H9V2H7zm-2 7h14v10H5V9z",
  alarm: "M12 4a9 9 0 1 0 0 18 9 9 0 0 0 0-18zm0 2a7 7 0 1 1 0 14 7 7 0 0 1 0-14zm-1 2v5.4l3.8 2.3 1-1.7-2.8-1.7V8h-2zM5.3 1.9 1.6 5l1.3 1.5 3.7-3.1-1.3-1.5zm13.4 0-1.3 1.5 3.7 3.1L22.4 5l-3.7-3.1z",
  repeat: "M17 1l4 4-4 4V6H7a3 3 0 0 0-3 3v2H2V9a5 5 0 0 1 5-5h10V1zM7 23l-4-4 4-4v3h10a3 3 0 0 0 3-3v-2h2v2a5 5 0 0 1-5 5H7v3z",
  edit: "M3 17.25V21h3.75L17.8 9.94l-3.75-3.75L3 17.25zM20.7 7.04a1 1 0 0 0 0-1.41l-2.33-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.82-1.83z",
  history: "M13 3a9 9 0 0 0-9 9H1l3.9 3.9L8.8 12H6a7 7 0 1 1 2.05 4.95l-1.42 1.42A9 9 0 1 0 13 3zm-1 5v5l4.25 2.52.77-1.28-3.52-2.09V8H12z",
  trash: "M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICON_PATHS[name]);
  svg.append(path);
  return svg;
}

function actionButton(action, iconName, label, text, extraClass = "") {
  return element("button", { type: "button", class: `ghost icon-only ${extraClass}`, "data-action": action, "aria-label": label, title: text },
    icon(iconName));
}

function taskItem(task, now) {
  const overdue = isOverdue(task, now);
  const doneBox = element("input", {
    type: "checkbox", class: "done-toggle", id: `done-${task.id}`, "data-action": "toggle",
  });
  doneBox.checked = task.completed;
  const meta = element("span", { class: "meta" });
  if (task.due_date) {
    meta.append(element("span", { class: `chip due${overdue ? " overdue" : ""}`, title: dateTimeFormat.format(new Date(task.due_date)) },
      icon("calendar"), `${overdue ? "Overdue · " : ""}${describeDue(task.due_date)}`));
  }
  if (task.remind_at) {
    meta.append(element("span", { class: "chip", title: "Reminder" },
      icon("alarm"), element("span", { class: "visually-hidden", text: "Reminder " }),
      describeDue(task.remind_at)));
  }
  if (task.recurrence_rule) {
    meta.append(element("span", { class: "chip", title: task.recurrence_rule },
      icon("repeat"), element("span", { class: "visually-hidden", text: "Repeats " }), describeRule(task.recurrence_rule)));
  }
  for (const tag of task.tags) meta.append(element("span", { class: "chip tag", text: `#${tag}` }));
  meta.append(element("span", { class: "priority-badge", title: `Priority ${task.priority}`, text: `P${task.priority}` }));

  return element("li", {
    class: `task priority-${task.priority}${task.completed ? " done" : ""}${overdue ? " is-overdue" : ""}${recentlyChanged.has(task.id) ? " flash" : ""}`,
    "data-task-id": task.id,
  },
    doneBox,
    element("div", { class: "task-main" },
      element("label", { class: "task-title", for: `done-${task.id}` },
        element("span", { class: "visually-hidden", text: task.completed ? "Done: " : "Open: " }), task.title),
      meta,
      task.description ? element("p", { class: "task-description", text: task.description }) : null),
    element("div", { class: "task-actions" },
      actionButton("edit", "edit", `Edit “${task.title}”`, "Edit"),
      actionButton("activity", "history", `Activity of “${task.title}”`, "Activity"),
      actionButton("delete", "trash", `Delete “${task.title}”`, "Delete", "danger")),
  );
}

// "Today · Mon, Jan 12" for a YYYY-MM-DD day of the user's zone.
const dayFormat = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", weekday: "short", month: "short", day: "numeric" });
function dayHeading(key) {
  const label = dayFormat.format(new Date(`${key}T12:00:00Z`));
  if (key === dayKey(new Date())) return `Today · ${label}`;
  if (key === dayKey(new Date(Date.now() + 864e5))) return `Tomorrow · ${label}`;
  return label;
}

function taskGroup(label, items, now) {
  return element("ul", { class: "tasks", "aria-label": label }, ...items.map((task) => taskItem(task, now)));
}

function render() {
  // Keep keyboard focus on the same control of the same task across re-renders.
  const active = document.activeElement;
  const focusTask = active?.closest?.("[data-task-id]")?.dataset.taskId;
  const focusAction = active?.dataset?.action;

  const now = new Date();
  const visible = [...tasks.values()].filter(matches).sort(compare);
  const list = $("task-list");
  if (view === "upcoming") {
    const days = new Map();
    for (const task of visible) {
      const key = dayKey(new Date(task.due_date));
      days.set(key, [...(days.get(key) || []), task]);
    }
    list.replaceChildren(...[...days.keys()].sort().map((key) => {
      const heading = dayHeading(key);
      return element("section", { class: "day-group", "aria-label": heading },
        element("h2", { class: "day-heading", text: heading }), taskGroup(heading, days.get(key), now));
    }));
  } else {
    list.replaceChildren(taskGroup(`${VIEWS[view].label} tasks`, visible, now));
  }
  recentlyChanged.clear();
  const empty = $("list-empty");
  empty.hidden = visible.length > 0;
  empty.textContent = tasks.size && activeFilterCount() + filters.search.value.trim().length ? "No task matches the search or filters." : VIEWS[view].empty;
  const open = [...tasks.values()].filter((task) => !task.completed).length;
  $("list-summary").textContent = tasks.size ? `${visible.length} shown · ${open} open of ${tasks.size}` : "";
  renderTagFilter();
  $("filters-count").textContent = activeFilterCount() ? ` · ${activeFilterCount()}` : "";

  const target = updateRoving(focusTask, focusAction);
  if (focusTask && focusAction && target?.closest("[data-task-id]")?.dataset.taskId === focusTask) target.focus();
  scheduleOverdueCheck(now);
}

function renderTagFilter() {
  const select = filters.tag;
  const tags = [...new Set([...tasks.values()].flatMap((task) => task.tags))].sort();
  const current = [...select.options].slice(1).map((option) => option.value);
  if (tags.join("\n") === current.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(element("option", { value: "", text: "Any" }), ...tags.map((tag) => element("option", { value: tag, text: tag })));
  select.value = tags.includes(chosen) ? chosen : "";
}

const activeFilterCount = () => [filters.priority, filters.tag, filters.due].filter((control) => control.value).length;

for (const control of Object.values(filters)) control.addEventListener("input", scheduleRender);

for (const button of document.querySelectorAll("[data-view]")) {
  button.addEventListener("click", () => {
    view = button.dataset.view;
    for (const other of document.querySelectorAll("[data-view]")) other.setAttribute("aria-pressed", String(other === button));
    scheduleRender();
  });
}

$("filters-button").addEventListener("click", () => {
  const panel = $("filters");
  panel.hidden = !panel.hidden;
  $("filters-button").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) filters.sort.focus();
});

// A due time passing while the page is open turns its task overdue without a reload: the list is
// rendered again at the next due time of an open task, and at least every minute (for "Today"
// and "Tomorrow" to follow the clock).
let overdueTimer = null;
function scheduleOverdueCheck(now) {
  clearTimeout(overdueTimer);
  const upcoming = [...tasks.values()].filter((task) => task.due_date && !task.completed)
    .map((task) => new Date(task.due_date) - now).filter((delay) => delay >= 0);
  overdueTimer = setTimeout(scheduleRender, Math.min(60_000, ...upcoming.map((delay) => delay + 50)));
}

// The list is one Tab stop (a roving tabindex): the arrows move between tasks (up, down, Home,
// End) and between a task's controls (left, right); Delete deletes the focused task.
let roving = { taskId: null, action: "toggle" };

function updateRoving(taskId = roving.taskId, action = roving.action) {
  const list = $("task-list");
  for (const control of list.querySelectorAll("[data-action]")) {
    control.tabIndex = -1;
    control.removeAttribute("aria-describedby");
  }
  const items = [...list.querySelectorAll(".task")];
  const item = items.find((node) => node.dataset.taskId === taskId) || items[0];
  const target = item && (item.querySelector(`[data-action="${action}"]`) || item.querySelector("[data-action]"));
  if (target) {
    target.tabIndex = 0;
    target.setAttribute("aria-describedby", "list-keys");
    roving = { taskId: item.dataset.taskId, action: target.dataset.action };
  }
  return target;
}

function focusControl(item, action) {
  const control = item?.querySelector(`[data-action="${action}"]`) || item?.querySelector("[data-action]");
  if (!control) return;
  updateRoving(item.dataset.taskId, control.dataset.action);
  control.focus();
}

$("task-list").addEventListener("focusin", (event) => {
  const control = event.target.closest("[data-action]");
  const item = event.target.closest("[data-task-id]");
  if (control && item) updateRoving(item.dataset.taskId, control.dataset.action);
});

$("task-list").addEventListener("keydown", (event) => {
  const control = event.target.closest("[data-action]");
  const item = event.target.closest("[data-task-id]");
  if (!control || !item || event.altKey || event.ctrlKey || event.metaKey) return;
  const items = [...$("task-list").querySelectorAll(".task")];
  const controls = [...item.querySelectorAll("[data-action]")];
  const index = items.indexOf(item);
  const step = {
    ArrowDown: () => focusControl(items[index + 1], control.dataset.action),
    ArrowUp: () => focusControl(items[index - 1], control.dataset.action),
    Home: () => focusControl(items[0], control.dataset.action),
    End: () => focusControl(items.at(-1), control.dataset.action),
    ArrowRight: () => focusControl(item, controls[controls.indexOf(control) + 1]?.dataset.action ?? control.dataset.action),
    ArrowLeft: () => focusControl(item, controls[controls.indexOf(control) - 1]?.dataset.action ?? control.dataset.action),
    Delete: () => tasks.has(item.dataset.taskId) && requestDelete(tasks.get(item.dataset.taskId)),
  }[event.key];
  if (!step) return;
  event.preventDefault();
  step();
});

// ---------------------------------------------------------------------------------------------
// Changing tasks

function showQuickError(message) {
  const node = $("quick-error");
  node.textContent = message || "";
  node.hidden = !message;
}

// Smart quick-add (quickadd.js): the task is created with the fields the server read in the text.
const quickAdd = attachQuickAdd({ input: $("quick-title"), api, maxLength: config.messageMaxLength });
$("quick-add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("quick-title");
  if (!input.value.trim()) return;
  try {
    const task = await api("/api/tasks/", { method: "POST", body: await quickAdd.fields() });
    applyChange("created", task);
    input.value = "";
    quickAdd.reset();
    showQuickError("");
  } catch (error) {
    showQuickError(firstMessage(error));
  }
});

function firstMessage(error) {
  if (error instanceof ApiError) {
    const messages = Object.values(error.body || {}).flat();
    return messages.length ? String(messages[0]) : error.message;
  }
  return "Could not reach the server. Try again.";
}

// What a failed write of `task` means for the page: gone (404), changed meanwhile (412: the
// answer is the newer task, now shown), or not saved.
function writeFailed(task, error) {
  if (error.status === 404) {
    applyChange("deleted", { ...task, version: task.version + 1 });  // deleted elsewhere meanwhile
  } else if (error.status === 412) {
    applyChange("updated", error.body);
    showToast({ title: "Changed elsewhere", body: `“${error.body.title}” was changed meanwhile; the list shows the newer version. Nothing of yours was applied.` });
  } else {
    showToast({ title: "Could not save", body: firstMessage(error) });
  }
  scheduleRender();
}

// How long Undo is offered, and a delete deferred, after complete and delete.
const UNDO_MS = 6000;

async function setCompleted(task, completed) {
  const verb = completed ? "complete" : "reopen";
  const updated = await api(`/api/tasks/${task.id}/${verb}/`, { method: "POST", version: task.version });
  applyChange("updated", updated);
  return updated;
}

async function toggle(task) {
  try {
    const updated = await setCompleted(task, !task.completed);
    if (!updated.completed) return;
    // Undo reopens: the completion and its undoing are both real changes, with their events.
    showToast({
      title: "Completed", body: `“${updated.title}”`, duration: UNDO_MS,
      action: { label: "Undo", name: `Undo completing “${updated.title}”`, run: () => undoComplete(updated) },
    });
  } catch (error) {
    writeFailed(task, error);
  }
}

async function undoComplete(completed) {
  try {
    await setCompleted(completed, false);
    render();
    focusControl(document.querySelector(`[data-task-id="${CSS.escape(completed.id)}"]`), "toggle");
  } catch (error) {
    writeFailed(completed, error);
  }
}

// A delete is deferred while its Undo is offered: nothing is deleted until the toast expires (or
// the page goes away), so Undo is no re-creation. The version the user saw goes along as
// If-Match: a task changed meanwhile is not deleted, but shown again.
const pendingDeletes = new Map(); // id -> { version, timer, toast }

async function requestDelete(task) {
  if (!(await confirmDelete(task))) return;
  const items = [...$("task-list").querySelectorAll(".task")];
  const index = items.findIndex((item) => item.dataset.taskId === task.id);
  const next = items[index + 1] || items[index - 1];
  const toast = showToast({
    title: "Deleted", body: `“${task.title}”`, duration: UNDO_MS,
    action: { label: "Undo", name: `Undo deleting “${task.title}”`, run: () => undoDelete(task.id) },
  });
  pendingDeletes.set(task.id, { version: task.version, toast, timer: setTimeout(() => commitDelete(task.id), UNDO_MS) });
  render();
  // Focus stays in the list, on the neighbour of the deleted task, or goes to the new-task field.
  const neighbour = next && document.querySelector(`[data-task-id="${CSS.escape(next.dataset.taskId)}"]`);
  if (neighbour) focusControl(neighbour, "toggle");
  else $("quick-title").focus();
}

function undoDelete(id) {
  const pending = pendingDeletes.get(id);
  if (!pending) return;
  clearTimeout(pending.timer);
  pendingDeletes.delete(id);
  render();
  focusControl(document.querySelector(`[data-task-id="${CSS.escape(id)}"]`), "delete");
}

async function commitDelete(id, { keepalive = false } = {}) {
  const pending = pendingDeletes.get(id);
  if (!pending) return;
  clearTimeout(pending.timer);
  pendingDeletes.delete(id);
  pending.toast.remove();
  const task = tasks.get(id);
  if (!task) return;  // deleted elsewhere meanwhile
  try {
    await api(`/api/tasks/${id}/`, { method: "DELETE", version: pending.version, keepalive });
    applyChange("deleted", { ...task, version: task.version + 1 });
  } catch (error) {
    writeFailed(task, error);
  }
}

// Leaving the page (or hiding it, which may be the last chance on a phone) sends the deferred deletes.
const flushDeletes = () => { for (const id of [...pendingDeletes.keys()]) commitDelete(id, { keepalive: true }); };
window.addEventListener("pagehide", flushDeletes);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flushDeletes(); });

// The confirmation before a delete: a modal dialog (focus inside, Esc cancels), not confirm().
function confirmDelete(task) {
  const box = $("confirm-dialog");
  $("confirm-title").textContent = `Delete “${task.title}”?`;
  $("confirm-text").textContent = "You can undo it for a few seconds.";
  box.returnValue = "";
  box.showModal();
  $("confirm-ok").focus();
  return new Promise((resolve) => box.addEventListener("close", () => resolve(box.returnValue === "delete"), { once: true }));
}
$("confirm-ok").addEventListener("click", () => $("confirm-dialog").close("delete"));
$("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close("cancel"));

$("task-list").addEventListener("click", (event) => {
  const control = event.target.closest("[data-action]");
  const item = event.target.closest("[data-task-id]");
  if (!control || !item) return;
  const task = tasks.get(item.dataset.taskId);
  if (!task) return;
  const action = control.dataset.action;
  if (action === "toggle") {
    toggle(task);
  } else if (action === "edit") {
    openTaskDialog(task);
  } else if (action === "activity") {
    openActivity(task);
  } else if (action === "delete") {
    requestDelete(task);
  }
});

// ---------------------------------------------------------------------------------------------
// The task dialog (create and edit)

const dialog = $("task-dialog");
const form = $("task-form");
let editing = null;        // the task as the dialog showed it: its version goes along as If-Match
let openedPayload = null;  // the form as opened: what the user changed is what differs from it
let conflict = null;       // { newer, changes } while the dialog offers a 412's newer version

function setHidden(id, hidden) { $(id).hidden = hidden; }

function syncDialogFields() {
  setHidden("remind-custom-field", form.reminder.value !== "custom");
  setHidden("repeat-days", form.repeat.value !== "weekly");
  setHidden("repeat-custom-field", form.repeat.value !== "custom");
}
form.reminder.addEventListener("change", syncDialogFields);
form.repeat.addEventListener("change", () => {
  if (form.repeat.value === "weekly" && !form.querySelector("[name=byday]:checked")) {
    // Preselect the due date's weekday, or today's.
    const base = form.due_date.value ? fromLocalInput(form.due_date.value) : new Date();
    const weekday = new Intl.DateTimeFormat("en-US", { timeZone: zone, weekday: "short" }).format(base).slice(0, 2).toUpperCase();
    const box = form.querySelector(`[name=byday][value=${weekday}]`);
    if (box) box.checked = true;
  }
  if (form.repeat.value === "custom" && !form.recurrence_rule.value && editing?.recurrence_rule) {
    form.recurrence_rule.value = editing.recurrence_rule;
  }
  syncDialogFields();
});

function clearErrors() {
  for (const node of form.querySelectorAll("[data-error-for]")) node.textContent = "";
  $("task-form-error").hidden = true;
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showErrors(errors) {
  const fieldOf = { title: "title", description: "description", due_date: "due_date", remind_at: "reminder", tags: "tags", recurrence_rule: "repeat" };
  let first = null;
  for (const [field, messages] of Object.entries(errors)) {
    const text = [].concat(messages).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ");
    const slot = form.querySelector(`[data-error-for="${field}"]`);
    if (slot) {
      slot.textContent = text;
      const control = form.elements[fieldOf[field]];
      control?.setAttribute("aria-invalid", "true");
      first ??= control;
    } else {
      $("task-form-error").textContent = text;
      $("task-form-error").hidden = false;
    }
  }
  first?.focus();
}

function openTaskDialog(task = null, title = "") {
  editing = task;
  form.reset();
  clearErrors();
  hideConflict();
  $("task-dialog-title").textContent = task ? "Edit task" : "New task";
  form.title.value = task ? task.title : title;
  form.description.value = task?.description ?? "";
  form.due_date.value = toLocalInput(task?.due_date);
  form.priority.value = String(task?.priority ?? 4);
  form.tags.value = (task?.tags ?? []).join(", ");
  // Reminder: a preset when it is one, otherwise the chosen time.
  form.reminder.value = "";
  if (task?.remind_at) {
    const minutes = task.due_date ? Math.round((new Date(task.due_date) - new Date(task.remind_at)) / 60000) : null;
    const preset = [...form.reminder.options].find((option) => option.value === String(minutes));
    form.reminder.value = preset ? preset.value : "custom";
    form.remind_at.value = toLocalInput(task.remind_at);
  }
  const { preset, days } = presetOf(task?.recurrence_rule);
  form.repeat.value = preset;
  form.recurrence_rule.value = preset === "custom" ? task.recurrence_rule : "";
  for (const box of form.querySelectorAll("[name=byday]")) box.checked = days.includes(box.value);
  syncDialogFields();
  openedPayload = formPayload();
  flagPastReminder();
  dialog.showModal();
  form.title.focus();
}

function formPayload() {
  const due = form.due_date.value;
  let remindAt = null;
  if (form.reminder.value === "custom") {
    remindAt = form.remind_at.value ? fromLocalInput(form.remind_at.value).toISOString() : null;
  } else if (form.reminder.value !== "" && due) {
    remindAt = new Date(fromLocalInput(due).getTime() - Number(form.reminder.value) * 60000).toISOString();
  }
  const days = [...form.querySelectorAll("[name=byday]:checked")].map((box) => box.value);
  return {
    title: form.title.value.trim(),
    description: form.description.value,
    // The API reads a time without offset in the user's zone, which is what the field shows.
    due_date: due || null,
    remind_at: remindAt,
    priority: Number(form.priority.value),
    tags: [...new Set(form.tags.value.split(",").map((tag) => tag.trim()).filter(Boolean))],
    recurrence_rule: ruleOf(form.repeat.value, days, form.recurrence_rule.value),
  };
}

function checkForm(payload) {
  const errors = {};
  if (!payload.title) errors.title = ["Give the task a title."];
  if (form.reminder.value && form.reminder.value !== "custom" && !payload.due_date) errors.remind_at = ["A reminder before the due time needs a due date."];
  if (form.reminder.value === "custom" && !payload.remind_at) errors.remind_at = ["Choose when to be reminded."];
  if (form.repeat.value && !payload.due_date) errors.recurrence_rule = ["A repeating task needs a due date."];
  if (form.repeat.value === "weekly" && !form.querySelector("[name=byday]:checked")) errors.recurrence_rule = ["Choose at least one day."];
  if (form.repeat.value === "custom" && !payload.recurrence_rule) errors.recurrence_rule = ["Enter a rule such as FREQ=WEEKLY;BYDAY=MO."];
  return errors;
}

// A reminder time already past is flagged while the user edits (it is not an error: the task
// may simply be late), so nobody saves one believing it will still ring.
function flagPastReminder() {
  const { remind_at: remindAt } = formPayload();
  $("task-remind-warning").textContent = remindAt && new Date(remindAt) < new Date()
    ? `This reminder time (${dateTimeFormat.format(new Date(remindAt))}) is already past.` : "";
}
for (const control of [form.due_date, form.reminder, form.remind_at]) {
  control.addEventListener("input", flagPastReminder);
  control.addEventListener("change", flagPastReminder);
}

// The fields the user changed in the dialog, as PATCH sends them: fields left alone are not
// sent, so a title saved elsewhere meanwhile survives a description saved here.
function changedFields(payload) {
  return Object.fromEntries(Object.entries(payload).filter(([name, value]) => JSON.stringify(value) !== JSON.stringify(openedPayload[name])));
}

async function save(request, { created = false } = {}) {
  const button = $("task-save");
  button.disabled = true;
  try {
    const task = await request();
    applyChange(created ? "created" : "updated", task);
    dialog.close();
  } catch (error) {
    if (error.status === 412) showConflict(error.body, conflict?.changes ?? changedFields(formPayload()));
    else if (error.status === 404) { writeFailed(editing, error); dialog.close(); }
    else if (error.status === 400) showErrors(error.body);
    else showErrors({ form: [firstMessage(error)] });
  } finally {
    button.disabled = false;
  }
}

const saveEdit = (changes, version) => save(() => api(`/api/tasks/${editing.id}/`, { method: "PATCH", body: changes, version }));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const payload = formPayload();
  const problems = checkForm(payload);
  if (Object.keys(problems).length) return showErrors(problems);
  if (!editing) return save(() => api("/api/tasks/", { method: "POST", body: payload }), { created: true });
  hideConflict();
  const changes = changedFields(payload);
  if (!Object.keys(changes).length) return dialog.close();
  return saveEdit(changes, editing.version);
});

// A 412: the task changed since the dialog opened. The dialog shows the newer version beside the
// user's unsaved change; "Keep my change" sends the same change against the newer version, "Use
// the newer version" drops it. Either way nothing is overwritten without the user seeing it.
function asTaskValue(field, value) {
  return field === "due_date" && value ? fromLocalInput(value).toISOString() : value;
}

function showConflict(newer, changes) {
  applyChange("updated", newer);
  const fields = TRACKED.filter((field) => field in changes || JSON.stringify(editing[field]) !== JSON.stringify(newer[field]));
  conflict = { newer, changes };
  $("conflict-rows").replaceChildren(...fields.map((field) => element("tr", { class: field in changes ? "yours" : "" },
    element("th", { scope: "row", text: FIELD_LABELS[field] || field }),
    element("td", { text: describeValue(field, newer[field]) }),
    element("td", { text: field in changes ? describeValue(field, asTaskValue(field, changes[field])) : "(unchanged)" }))));
  $("conflict").hidden = false;
  $("conflict-heading").focus();
}

function hideConflict() {
  conflict = null;
  $("conflict").hidden = true;
}

$("conflict-keep").addEventListener("click", () => {
  editing = conflict.newer;
  saveEdit(conflict.changes, conflict.newer.version);
});
$("conflict-take").addEventListener("click", () => {
  const newer = conflict.newer;
  dialog.close();
  focusControl(document.querySelector(`[data-task-id="${CSS.escape(newer.id)}"]`), "edit");
});
dialog.addEventListener("close", hideConflict);

$("task-cancel").addEventListener("click", () => dialog.close());
$("open-new").addEventListener("click", () => openTaskDialog(null, $("quick-title").value.trim()));
$("fab-add").addEventListener("click", () => openTaskDialog(null, $("quick-title").value.trim()));

// ---------------------------------------------------------------------------------------------
// Activity (the task's audit trail)

const EVENT_LABELS = { "task.created": "Created", "task.updated": "Updated", "task.completed": "Completed", "task.deleted": "Deleted" };
const SOURCE_LABELS = { "todo-api": "web or API", "chat-api": "chat assistant", "recurring-task-service": "recurrence", "reminder-scheduler": "reminders" };
const TRACKED = ["title", "description", "completed", "due_date", "remind_at", "priority", "recurrence_rule", "tags"];
const FIELD_LABELS = {
  title: "Title", description: "Description", completed: "Done", due_date: "Due", remind_at: "Reminder",
  priority: "Priority", recurrence_rule: "Repeat", tags: "Tags",
};

function describeValue(field, value) {
  if (value == null || value === "" || (Array.isArray(value) && !value.length)) return "none";
  if (field === "due_date" || field === "remind_at") return dateTimeFormat.format(new Date(value));
  if (field === "tags") return value.join(", ");
  if (field === "recurrence_rule") return describeRule(value);
  return String(value);
}

async function openActivity(task) {
  const list = $("activity-list");
  list.replaceChildren();
  $("activity-title").textContent = `Activity · ${task.title}`;
  $("activity-status").textContent = "Loading…";
  $("activity-dialog").showModal();
  try {
    const entries = await allPages(`/api/audit/?task_id=${encodeURIComponent(task.id)}`);
    // Oldest first, to tell what each change changed.
    const ordered = [...entries].reverse();
    const items = ordered.map((entry, index) => {
      const before = index > 0 ? ordered[index - 1].data : null;
      const changes = before
        ? TRACKED.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(entry.data[field]))
            .map((field) => `${field.replace("_", " ")}: ${describeValue(field, before[field])} → ${describeValue(field, entry.data[field])}`)
        : [];
      return element("li", {},
        element("strong", { text: EVENT_LABELS[entry.event_type] || entry.event_type }),
        element("time", { datetime: entry.timestamp, text: ` ${dateTimeFormat.format(new Date(entry.timestamp))}` }),
        element("span", { class: "muted", text: ` · via ${SOURCE_LABELS[entry.metadata?.source] || entry.metadata?.source || "?"}` }),
        changes.length ? element("ul", { class: "changes" }, ...changes.map((text) => element("li", { text }))) : null);
    });
    list.replaceChildren(...items.reverse());
    $("activity-status").textContent = entries.length ? "" : "No activity recorded yet (it appears a moment after a change).";
  } catch (error) {
    $("activity-status").textContent = `Could not load the activity: ${firstMessage(error)}`;
  }
}
$("activity-close").addEventListener("click", () => $("activity-dialog").close());

// ---------------------------------------------------------------------------------------------
// Notifications and toasts

// A toast; `action` ({ label, name, run }) adds a button such as Undo. Returns the toast element.
function showToast({ title, body, taskId = null, action = null, duration = 12000 }) {
  const toast = element("div", { class: "toast", role: "alert" },
    element("div", { class: "toast-text" }, element("strong", { text: title }), element("p", { text: body })));
  const actions = element("div", { class: "toast-actions" });
  if (action) {
    const button = element("button", { type: "button", class: "link toast-action", "aria-label": action.name, text: action.label });
    button.addEventListener("click", () => {
      toast.remove();
      action.run();
    });
    actions.append(button);
  }
  if (taskId && tasks.has(taskId)) {
    const view = element("button", { type: "button", class: "link", text: "Show task" });
    view.addEventListener("click", () => {
      const item = document.querySelector(`[data-task-id="${CSS.escape(taskId)}"]`);
      item?.scrollIntoView({ block: "center", behavior: "smooth" });
      focusControl(item, "toggle");
      toast.remove();
    });
    actions.append(view);
  }
  const close = element("button", { type: "button", class: "link", "aria-label": `Dismiss: ${title}`, text: "Dismiss" });
  close.addEventListener("click", () => toast.remove());
  actions.append(close);
  toast.append(actions);
  $("toasts").append(toast);
  let timer = setTimeout(() => toast.remove(), duration);
  toast.addEventListener("mouseenter", () => clearTimeout(timer));
  toast.addEventListener("focusin", () => clearTimeout(timer));
  toast.addEventListener("mouseleave", () => { timer = setTimeout(() => toast.remove(), Math.min(duration, 6000)); });
  return toast;
}

function renderNotifications() {
  const items = [...notifications.values()].sort((a, b) => new Date(b.created_at) - new Date(a.created_at));
  const unread = items.filter((n) => !n.read).length;
  const badge = $("unread-count");
  badge.textContent = String(unread);
  badge.hidden = unread === 0;
  $("notifications-button").setAttribute("aria-label", `Notifications, ${unread} unread`);
  $("notifications-empty").hidden = items.length > 0;
  $("notification-list").replaceChildren(...items.map((n) => {
    const item = element("li", { class: n.read ? "read" : "unread" },
      element("div", {}, element("strong", { text: n.title }), element("p", { text: n.body }),
        element("time", { class: "muted", datetime: n.created_at, text: dateTimeFormat.format(new Date(n.created_at)) })));
    if (!n.read) {
      const mark = element("button", { type: "button", class: "link", "aria-label": `Mark “${n.title}” read`, text: "Mark read" });
      mark.addEventListener("click", async () => {
        try {
          const updated = await api(`/api/notifications/${n.id}/read/`, { method: "POST" });
          notifications.set(updated.id, updated);
          renderNotifications();
          $("notifications-heading").focus?.();
        } catch (error) {
          showToast({ title: "Could not mark it read", body: firstMessage(error) });
        }
      });
      item.append(mark);
    }
    return item;
  }));
}

function receiveNotification(notification, { announce }) {
  const isNew = !notifications.has(notification.id);
  notifications.set(notification.id, notification);
  renderNotifications();
  if (isNew && announce) showToast({ title: "Reminder", body: notification.body, taskId: notification.task_id });
}

async function loadNotifications() {
  const items = await allPages("/api/notifications/");
  for (const notification of items) receiveNotification(notification, { announce: false });
}

const panel = $("notifications-panel");
function togglePanel(open = panel.hidden) {
  panel.hidden = !open;
  $("notifications-button").setAttribute("aria-expanded", String(open));
  if (open) (panel.querySelector("button") || panel).focus();
  else $("notifications-button").focus();
}
$("notifications-button").addEventListener("click", () => togglePanel());
$("notifications-close").addEventListener("click", () => togglePanel(false));
panel.addEventListener("keydown", (event) => { if (event.key === "Escape") togglePanel(false); });
// The assistant panel closes on Esc too, through its own Close button.
$("chat-panel").addEventListener("keydown", (event) => { if (event.key === "Escape") $("chat-close").click(); });

// ---------------------------------------------------------------------------------------------
// The live connection: /ws/sync/, reconnecting with backoff, catching up after each connect

const connection = $("connection");
function setConnection(state, text) {
  connection.dataset.state = state;
  connection.querySelector(".connection-text").textContent = text;
}

let catchingUp = null;
async function catchUp() {
  // One catch-up at a time; a second request waits for the running one and then runs again.
  const previous = catchingUp;
  const run = (async () => {
    await previous?.catch(() => {});
    let more = true;
    while (more) {
      let page;
      try {
        page = await api(`/api/sync/?since=${encodeURIComponent(syncCursor)}`);
      } catch (error) {
        if (error.status !== 410) throw error;
        // What we missed is partly purged, deletions included: only a fresh list is complete.
        // The 410's cursor predates the reload, so the next round catches up what changes meanwhile.
        syncCursor = error.body.cursor;
        await loadTasks({ replace: true });
        continue;
      }
      for (const event of page.changes) applySyncEvent(event, { remote: true });
      syncCursor = page.cursor;
      more = Boolean(page.has_more);
    }
  })();
  catchingUp = run;
  return run;
}

let socket = null;
let failures = 0;
let retryTimer = null;

function connect() {
  clearTimeout(retryTimer);
  setConnection("connecting", failures ? "Reconnecting…" : "Connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/sync/`);
  socket.addEventListener("open", async () => {
    failures = 0;
    setConnection("live", "Live");
    try {
      await Promise.all([catchUp(), loadNotifications()]);
    } catch (error) {
      console.warn("catch-up failed", error);
    }
  });
  socket.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    if (message.event_type === "sync.task_changed") applySyncEvent(message, { remote: true });
    else if (message.event_type === "notification.created") receiveNotification(message.data, { announce: true });
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 4401) {
      // Signed out (elsewhere, or the session expired): api() sends the page to the sign-in form.
      // A session that is still valid was refused for its origin: say so instead of looping.
      api("/api/auth/me/").then(() => setConnection("offline", "Live updates refused"), () => {});
      return;
    }
    // Exponential backoff with jitter, capped, so a restarting server is not stampeded.
    const delay = Math.min(30000, 1000 * 2 ** failures) * (0.5 + Math.random() / 2);
    failures += 1;
    const until = Date.now() + delay;
    const tick = () => {
      const seconds = Math.ceil((until - Date.now()) / 1000);
      if (seconds > 0 && connection.dataset.state === "offline") {
        connection.querySelector(".connection-text").textContent = `Offline · retrying in ${seconds}s`;
        retryTimer = setTimeout(tick, 1000);
      }
    };
    setConnection("offline", "Offline");
    tick();
    retryTimer = setTimeout(connect, delay);
  });
}

// Back online or back to the tab: do not wait for the backoff.
window.addEventListener("online", () => { if (socket?.readyState !== WebSocket.OPEN) connect(); });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  if (socket?.readyState === WebSocket.OPEN) catchUp().catch(() => {});
  else if (socket?.readyState === WebSocket.CLOSED) connect();
});

// Keyboard: "/" searches, "n" adds a task (when not typing somewhere).
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select, dialog") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "/") { event.preventDefault(); filters.search.focus(); }
  if (event.key === "n") { event.preventDefault(); $("quick-title").focus(); }
});

// ---------------------------------------------------------------------------------------------
// Start: the list as of now, then the socket (whose first catch-up covers the gap since the
// page was rendered), then notifications.

// --------------------------------------------------------------------------------- chat panel
// Messages go to POST /api/chat/; tasks the assistant changes arrive through the live sync
// like any other change, so the panel only shows the conversation. The conversation's id is kept
// per user in localStorage, and its messages are read back (GET /api/chat/<id>/) when the panel
// first opens after a reload.

const chatPanel = $("chat-panel");
const CHAT_KEY = `todo.chat.conversation.${config.userId}`;
$("chat-input").maxLength = config.messageMaxLength;
let chatHistory = null;  // the read-back of the stored conversation, once per page

function toggleChat(open = chatPanel.hidden) {
  chatPanel.hidden = !open;
  $("chat-button").setAttribute("aria-expanded", String(open));
  if (open) {
    $("chat-input").focus();
    chatHistory ??= loadChatHistory();
  } else {
    $("chat-button").focus();
  }
}

function chatLine(role, text) {
  const line = element("li", { class: `chat-message ${role}` }, text);
  $("chat-log").append(line);
  line.scrollIntoView({ block: "nearest" });
  return line;
}

function clearChatLog() {
  for (const line of [...$("chat-log").children].slice(1)) line.remove();  // the greeting stays
}

async function loadChatHistory() {
  const conversation = localStorage.getItem(CHAT_KEY);
  if (!conversation) return;
  try {
    const history = await api(`/api/chat/${encodeURIComponent(conversation)}/`);
    if (localStorage.getItem(CHAT_KEY) !== conversation) return;  // a new chat began meanwhile
    clearChatLog();
    if (history.has_more) chatLine("assistant", "(Earlier messages are not shown.)");
    for (const message of history.messages) chatLine(message.role, message.content);
  } catch (error) {
    if (error.status === 404) localStorage.removeItem(CHAT_KEY);  // gone, or another user's: start anew
    else chatLine("error", `Could not load the conversation: ${firstMessage(error)}`);
  }
}

$("chat-button").addEventListener("click", () => toggleChat());
$("chat-close").addEventListener("click", () => toggleChat(false));
$("chat-new").addEventListener("click", () => {
  localStorage.removeItem(CHAT_KEY);
  clearChatLog();
  $("chat-input").focus();
});
$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = $("chat-input").value.trim();
  if (!message) return;
  await chatHistory;  // the old messages first, then this one
  chatLine("user", message);
  $("chat-input").value = "";
  $("chat-send").disabled = true;
  const body = { message };
  const conversation = localStorage.getItem(CHAT_KEY);
  if (conversation) body.conversation_id = conversation;
  try {
    const answer = await api("/api/chat/", { method: "POST", body });
    localStorage.setItem(CHAT_KEY, answer.conversation_id);
    chatLine("assistant", answer.reply);
  } catch (error) {
    if (error.status === 404) localStorage.removeItem(CHAT_KEY);  // the conversation is gone: start anew
    chatLine("error", `The assistant could not answer: ${firstMessage(error)}`);
  } finally {
    $("chat-send").disabled = false;
  }
});

// The task list from the API. With `replace`, a task the page showed before asking but the list
// lacks was deleted without the page learning of it, and is dropped for good. Tasks that arrived
// while the list was on its way are newer than it and stay.
async function loadTasks({ replace = false } = {}) {
  const shownBefore = new Set(tasks.keys());
  const all = await allPages("/api/tasks/?page_size=200&ordering=-created_at");
  if (replace) {
    const listed = new Set(all.map((task) => task.id));
    for (const id of shownBefore) {
      if (!listed.has(id)) {
        tasks.delete(id);
        deletedIds.add(id);
      }
    }
  }
  for (const task of all) applyChange("created", task);
  scheduleRender();
}

async function start() {
  try {
    await loadTasks();
  } catch (error) {
    showQuickError(`Could not load your tasks: ${firstMessage(error)}`);
  }
  render();
  document.body.dataset.ready = "true";
  connect();
}

start();
