// Smart quick-add: live preview chips of what the server reads in the quick-add text
// ("Buy bread tomorrow 9am p1 #shopping" -> due tomorrow 09:00, P1 Urgent, #shopping), and the
// fields the task is then created with.
//
// The reading is the chat assistant's task parser (POST /api/tasks/parse/): one parser for both,
// so the page only shows what it answers, times already in the user's zone. Each chip can be
// removed; its words are then sent back as `ignore` ranges and stay in the title. The ranges
// follow the text as it is edited around them; an edit inside one gives its words back to the
// parser.

const DEBOUNCE_MS = 150;
// Shown before a chip's value where the value alone does not say what it is.
const FIELD_PREFIX = { due_date: "Due", remind_at: "Reminder", recurrence_rule: "Repeats", description: "Note" };
const FIELD_NAME = { ...FIELD_PREFIX, priority: "Priority", tags: "Tag" };

function node(tag, attributes = {}, text = "") {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.textContent = text;
  return element;
}

// `ranges` of the text `before`, moved to where they stand in `after` (one edit between them).
function followEdit(ranges, before, after) {
  if (before === after) return ranges;
  let prefix = 0;
  while (prefix < before.length && prefix < after.length && before[prefix] === after[prefix]) prefix++;
  let suffix = 0;
  while (suffix < before.length - prefix && suffix < after.length - prefix
    && before[before.length - 1 - suffix] === after[after.length - 1 - suffix]) suffix++;
  const editEnd = before.length - suffix;  // the edit replaced before[prefix, editEnd)
  const shift = after.length - before.length;
  return ranges.flatMap(([start, end]) => {
    if (end <= prefix) return [[start, end]];
    if (start >= editEnd) return [[start + shift, end + shift]];
    return [];
  });
}

// Wires the preview to the quick-add `input`; `api` is the page's REST helper. Returns
// { fields(): the parsed fields of what is typed now (a promise), reset(): after a create }.
export function attachQuickAdd({ input, api, maxLength }) {
  const stylesheet = node("link", { rel: "stylesheet", href: new URL("./quickadd.css", import.meta.url).href });
  document.head.append(stylesheet);
  if (maxLength) input.maxLength = maxLength;  // the text holds more than the title

  const chips = node("ul", { id: "quick-chips", class: "quick-chips", "aria-label": "Recognised in the new task" });
  const hint = node("p", { id: "quick-hint", class: "quick-hint", "aria-live": "polite" });
  chips.hidden = true;
  hint.hidden = true;
  input.form.after(chips, hint);
  input.setAttribute("aria-describedby", "quick-chips quick-hint");

  let ignored = [];            // [start, end] ranges of input.value not to read
  let typed = input.value;     // the text `ignored` refers to
  let shown = null;            // the text the chips were read from
  let latest = null;           // { key, answer } of the newest request
  let timer = null;

  function parse() {
    const text = input.value;
    const key = JSON.stringify([text, ignored]);
    if (latest?.key === key) return latest.answer;
    const request = { text, ignore: ignored };
    const answer = api("/api/tasks/parse/", { method: "POST", body: request });
    latest = { key, answer };
    answer.then(
      (preview) => { if (latest?.key === key) render(preview, text); },
      (error) => { if (latest?.key === key) explain(error); },
    );
    return answer;
  }

  function render(preview, text) {
    hint.hidden = true;
    shown = text;
    const groups = new Map();  // one chip per value: "tomorrow" and "9am" are one due time
    for (const span of preview?.spans ?? []) {
      const key = `${span.field}\n${span.label}`;
      if (!groups.has(key)) groups.set(key, { field: span.field, label: span.label, spans: [] });
      groups.get(key).spans.push(span);
    }
    chips.replaceChildren(...[...groups.values()].map(chip));
    chips.hidden = groups.size === 0;
  }

  function chip({ field, label, spans }) {
    const words = spans.map((span) => span.text).join(" ");
    const item = node("li", { class: `quick-chip ${field.replace("_", "-")}`, "data-field": field });
    if (FIELD_PREFIX[field]) item.append(node("span", { class: "quick-chip-field" }, FIELD_PREFIX[field]));
    item.append(node("span", { class: "quick-chip-value" }, label));
    const remove = node("button", {
      type: "button", class: "quick-chip-remove",
      "aria-label": `Remove ${FIELD_NAME[field].toLowerCase()} ${label}: keep “${words}” in the title`,
      title: `Keep “${words}” in the title`,
    }, "×");
    remove.addEventListener("click", () => {
      const ranges = spans.map((span) => [span.start, span.end]);
      ignored = [...ignored, ...followEdit(ranges, shown, input.value)];
      input.focus();
      parse().catch(() => {});
    });
    item.append(remove);
    return item;
  }

  function explain(error) {
    chips.hidden = true;
    const messages = Object.values(error?.body || {}).flat();
    hint.textContent = messages.length ? String(messages[0]) : "";
    hint.hidden = !hint.textContent;
  }

  function clear() {
    clearTimeout(timer);
    latest = null;
    chips.replaceChildren();
    chips.hidden = true;
    hint.hidden = true;
  }

  input.addEventListener("input", () => {
    ignored = followEdit(ignored, typed, input.value);
    typed = input.value;
    if (!input.value.trim()) return clear();
    clearTimeout(timer);
    timer = setTimeout(() => parse().catch(() => {}), DEBOUNCE_MS);
  });

  return {
    fields: async () => {
      clearTimeout(timer);
      return (await parse()).fields;
    },
    reset: () => {
      ignored = [];
      typed = input.value;
      clear();
    },
  };
}
