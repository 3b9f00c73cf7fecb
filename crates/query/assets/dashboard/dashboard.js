// Baton's dashboard: asks `/v1/dashboard` (the query API, under its read tokens) for every
// panel at one log position, draws what it answers, and asks again every few seconds so the
// page follows the log. Everything the server sends is put on the page as text (the charts
// as images), never as markup.
"use strict";

const TOKEN_KEY = "baton-read-token";
const FOLLOW_MS = 3000;

const state = {
  position: null,
  filters: new URLSearchParams(),
  timer: null,
  shown: "",
};

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function token() {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch (_) {
    return null;
  }
}

function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

// How a value is written: counts with separators, rates as percentages, other numbers with
// two decimals, times as given (ISO 8601, UTC).
function display(value, column = "") {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    if (/rate|share/.test(column)) return (value * 100).toFixed(1) + "%";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  return String(value);
}

function csvField(value) {
  let text = value === null || value === undefined ? "" : String(value);
  // As the query API's CSV: text that looks like a formula is not run by a spreadsheet.
  if (typeof value === "string" && /^[=+\-@]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function csv(table) {
  const lines = [table.columns.map(csvField).join(",")];
  for (const row of table.rows) lines.push(table.columns.map((c) => csvField(row[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}

function download(name, text) {
  const link = element("a", {
    href: "data:text/csv;charset=utf-8," + encodeURIComponent(text),
    download: name,
  });
  document.body.append(link);
  link.click();
  link.remove();
}

function tableOf(table) {
  const head = element("tr", {}, ...table.columns.map((c) => element("th", { scope: "col" }, c)));
  const body = table.rows.map((row) =>
    element(
      "tr",
      {},
      ...table.columns.map((column) => {
        const value = row[column];
        return element(
          "td",
          {
            "data-column": column,
            "data-value": value === null || value === undefined ? "" : String(value),
            class: typeof value === "number" ? "number" : null,
          },
          display(value, column),
        );
      }),
    ),
  );
  return element(
    "div",
    { class: "scroll", tabindex: "0", role: "region", "aria-label": "table " + table.name },
    element("table", { "data-table": table.name }, element("thead", {}, head), element("tbody", {}, ...body)),
  );
}

function figure(chart, position) {
  chart.tableOnly = chart.tableOnly || chart.table_only;
  const caption = element("figcaption", { id: "caption-" + chart.id }, chart.title);
  if (chart.filtered) caption.append(element("span", { class: "badge" }, "filtered"));
  const picture = chart.svg
    ? element("img", {
        src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(chart.svg),
        alt: chart.title + ". The table below holds every figure of this chart.",
      })
    : chart.tableOnly
      ? null
      : element("p", { class: "empty" }, "Nothing to draw yet: the table below is empty or all zero.");
  const details = element(
    "details",
    { open: chart.tableOnly ? "" : null },
    element("summary", {}, (chart.tableOnly ? "Table (" : "Table behind this chart (") + chart.table.rows.length + " rows, from " + chart.table.source + ")"),
    tableOf(chart.table),
  );
  const button = element("button", { type: "button" }, "Download CSV");
  button.addEventListener("click", () =>
    download(chart.table.name + "-at-" + position + ".csv", csv(chart.table)),
  );
  return element(
    "figure",
    { "data-chart": chart.id, "aria-labelledby": "caption-" + chart.id },
    caption,
    picture,
    details,
    element("div", { class: "actions" }, button),
  );
}

function kpis(list) {
  return element(
    "dl",
    { class: "kpis" },
    ...list.map((kpi) =>
      element(
        "div",
        { "data-kpi": kpi.id, "data-value": kpi.value === null ? "" : String(kpi.value) },
        element("dt", {}, kpi.label),
        element("dd", {}, display(kpi.value, kpi.id)),
      ),
    ),
  );
}

function comparisonTables(report) {
  const stages = {
    name: "comparison_stages",
    source: "/v1/comparisons",
    columns: ["stage", "present_in", "live_entered", "candidate_entered", "live_conversion_rate", "candidate_conversion_rate"],
    rows: report.stages.map((pair) => ({
      stage: pair.name,
      present_in: pair.live && pair.candidate ? "both" : pair.live ? "live only" : "candidate only",
      live_entered: pair.live ? pair.live.entered : null,
      candidate_entered: pair.candidate ? pair.candidate.entered : null,
      live_conversion_rate: pair.live ? pair.live.conversion_rate : null,
      candidate_conversion_rate: pair.candidate ? pair.candidate.conversion_rate : null,
    })),
  };
  const groups = [
    ["both", report.mql_both],
    ["live only", report.mql_only_live],
    ["candidate only", report.mql_only_candidate],
  ];
  const mqls = {
    name: "comparison_mqls",
    source: "/v1/comparisons",
    columns: ["mql_under", "people", "won", "lost", "open", "won_share"],
    rows: groups.map(([under, group]) => ({
      mql_under: under,
      people: group.people,
      won: group.won,
      lost: group.lost,
      open: group.open,
      won_share: group.won_share,
    })),
  };
  const load = report.sla_load;
  const sla = {
    name: "follow_up_load",
    source: "/v1/comparisons",
    columns: ["definition", "mqls", "weeks", "mean_per_week", "peak_week_mqls"],
    rows: [
      { definition: "live", ...load.live },
      { definition: "candidate", ...load.candidate },
    ],
  };
  return [stages, mqls, sla];
}

function definitionsPanel(panel, position) {
  const section = element("div", {});
  const live = panel.live;
  section.append(
    element("p", {}, "Live: view ", element("code", {}, live.view), ", definition ", element("code", {}, live.definition), " (" + live.definition_hash + ")."),
  );
  if (panel.candidates.length === 0) {
    section.append(
      element("p", {}, "No candidate view is served. ", element("code", {}, "baton replay --funnel FILE"), " builds one; restart ", element("code", {}, "baton serve"), " to see it here."),
    );
  }
  for (const candidate of panel.candidates) {
    const block = element(
      "div",
      { class: "candidate", "data-candidate": candidate.view },
      element("h3", {}, "Candidate ", element("code", {}, candidate.view), ": " + candidate.definition + " at position " + candidate.position),
    );
    if (candidate.comparison) {
      const [stages, mqls, sla] = comparisonTables(candidate.comparison.report);
      block.append(
        element("div", { class: "charts" },
          figure({ id: "compare-" + candidate.view, title: "People who entered each stage, live and candidate (stages matched by name)", svg: candidate.comparison.svg, table: stages, filtered: false }, position),
          figure({ id: "mqls-" + candidate.view, title: "Who becomes an MQL under which definition, and how they ended", svg: null, tableOnly: true, table: mqls, filtered: false }, position),
          figure({ id: "load-" + candidate.view, title: "Follow-up load on sales (hand-offs per week)", svg: null, tableOnly: true, table: sla, filtered: false }, position),
        ),
      );
    } else {
      block.append(element("p", {}, "No comparison is kept for it: run ", element("code", {}, candidate.compare), "."));
    }
    block.append(element("p", {}, "Adopt it: ", element("code", {}, candidate.promote)));
    section.append(block);
  }
  return section;
}

function render(data) {
  const main = $("main");
  const nav = $("panels-nav");
  const focused = document.activeElement && document.activeElement.closest("[data-chart]");
  const open = new Set([...document.querySelectorAll("details[open]")].map((d) => d.closest("[data-chart]")?.dataset.chart));
  main.replaceChildren();
  nav.replaceChildren();
  for (const panel of data.panels) {
    const heading = element("h2", { id: "title-" + panel.id }, panel.title);
    const section = element("section", { class: "panel", id: panel.id, "data-panel": panel.id, "aria-labelledby": "title-" + panel.id }, heading);
    if (panel.kpis.length) section.append(kpis(panel.kpis));
    if (panel.charts.length) section.append(element("div", { class: "charts" }, ...panel.charts.map((c) => figure(c, data.position))));
    if (panel.id === "definitions") section.append(definitionsPanel(panel, data.position));
    main.append(section);
    nav.append(element("a", { href: "#" + panel.id }, panel.title));
  }
  // The funnel's own table (entered, current, conversion, median days per stage) is shown
  // open: its figures are the panel's point.
  open.add("funnel-stages");
  for (const chart of open) {
    const details = chart && main.querySelector(`[data-chart="${CSS.escape(chart)}"] details`);
    if (details) details.open = true;
  }
  if (focused) main.querySelector(`[data-chart="${CSS.escape(focused.dataset.chart)}"] button`)?.focus();
  nav.hidden = false;
  $("filters").hidden = false;
  fillSegments(data.segments || {});
  document.body.dataset.position = String(data.position);
  setStatus(
    "View " + data.view + " · definition " + data.definition + " (" + data.definition_hash.slice(0, 19) + ") · log position " + data.position + (data.as_of ? " · as of " + data.as_of : "") + (state.filters.toString() ? " · filtered" : ""),
  );
}

function fillSegments(segments) {
  for (const name of ["industry", "region", "size"]) {
    const select = $("filters").elements[name];
    const chosen = state.filters.get(name) || "";
    const values = segments[name] || [];
    const known = [...select.options].map((o) => o.value).slice(1);
    if (known.join("\u0000") === values.join("\u0000")) continue;
    select.replaceChildren(element("option", { value: "" }, "any"), ...values.map((v) => element("option", { value: v }, v)));
    select.value = chosen;
  }
}

function showLogin(reason) {
  $("login").hidden = false;
  $("login-reason").textContent = reason;
  $("forget").hidden = true;
  setStatus("A read token is needed.", true);
  $("token").focus();
}

async function refresh() {
  clearTimeout(state.timer);
  const headers = {};
  const saved = token();
  if (saved) headers.Authorization = "Bearer " + saved;
  let response;
  try {
    // Revalidated: while nothing moved, the server answers 304 and builds nothing.
    response = await fetch("/v1/dashboard?" + state.filters.toString(), { headers, cache: "no-cache" });
  } catch (error) {
    setStatus("Baton cannot be reached (" + error.message + "); trying again.", true);
    state.timer = setTimeout(refresh, FOLLOW_MS);
    return;
  }
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    showLogin(body.error || "This server needs a read token.");
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    setStatus((body.error || "The dashboard is not available (" + response.status + ")") + "; trying again.", true);
    state.timer = setTimeout(refresh, FOLLOW_MS);
    return;
  }
  const data = await response.json();
  $("login").hidden = true;
  $("forget").hidden = !saved;
  const shown = data.position + "?" + state.filters.toString();
  if (shown !== state.shown) {
    state.shown = shown;
    render(data);
  }
  state.timer = setTimeout(refresh, FOLLOW_MS);
}

function dateToInstant(text, nextDay) {
  if (!text) return null;
  const day = new Date(text + "T00:00:00Z");
  if (nextDay) day.setUTCDate(day.getUTCDate() + 1);
  return day.toISOString().replace(".000Z", "Z");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      window.localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    } catch (_) {
      setStatus("This browser does not keep the token (storage is off).", true);
    }
    $("token").value = "";
    state.shown = "";
    refresh();
  });
  $("forget").addEventListener("click", () => {
    window.localStorage.removeItem(TOKEN_KEY);
    state.shown = "";
    $("main").replaceChildren();
    showLogin("The token was forgotten.");
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target.elements;
    const filters = new URLSearchParams();
    const from = dateToInstant(form.from.value, false);
    const to = dateToInstant(form.to.value, true);
    if (from) filters.set("from", from);
    if (to) filters.set("to", to);
    for (const name of ["industry", "region", "size"]) if (form[name].value) filters.set(name, form[name].value);
    state.filters = filters;
    refresh();
  });
  $("filters").addEventListener("reset", () => {
    state.filters = new URLSearchParams();
    setTimeout(refresh, 0);
  });
  refresh();
});
