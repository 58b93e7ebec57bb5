// The DevMetrics dashboard: reads the metrics JSON API (same origin, session cookie) for the
// chosen range and draws the tiles, charts and tables. Every chart is kept in
// window.dashboardCharts (name -> Chart) so tests and people can inspect what is drawn;
// <body data-state> is "loading", "ready" or "error".
"use strict";

(function () {
  const body = document.body;
  const API = `/api/v1/orgs/${encodeURIComponent(body.dataset.org)}`;
  const PAGE_SIZE = 100; // the API's largest page
  const COLORS = {
    blue: "#2563eb", teal: "#0d9488", orange: "#ea580c", red: "#dc2626", purple: "#7c3aed",
    green: "#16a34a", yellow: "#ca8a04", grey: "#6b7280",
  };
  const RISK_COLORS = { LOW: COLORS.green, MEDIUM: COLORS.yellow, HIGH: COLORS.orange,
    CRITICAL: COLORS.red };
  const charts = {};
  window.dashboardCharts = charts;

  // Formatting ----------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

  function duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const minutes = Math.floor(s / 60);
    if (minutes < 60) return `${minutes}m`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return minutes % 60 ? `${hours}h ${minutes % 60}m` : `${hours}h`;
    const days = Math.floor(hours / 24);
    return hours % 24 ? `${days}d ${hours % 24}h` : `${days}d`;
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : `${decimal.format(rate * 100)}%`;
  }

  function count(n) {
    return n === null || n === undefined ? "—" : integer.format(n);
  }

  // Reading the API -------------------------------------------------------------------------

  async function getJSON(path, params) {
    const url = `${API}${path}?${new URLSearchParams(params)}`;
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json()).message || message;
      } catch (_) { /* not JSON */ }
      throw new Error(`${path}: ${response.status} ${message}`);
    }
    return { data: await response.json(), headers: response.headers };
  }

  async function getAllPages(path, params) {
    const rows = [];
    for (let page = 1; ; page += 1) {
      const { data, headers } = await getJSON(path, { ...params, page, page_size: PAGE_SIZE });
      rows.push(...data);
      const pagination = JSON.parse(headers.get("X-Pagination") || "null");
      if (!pagination || !pagination.total_pages || page >= pagination.total_pages) return rows;
    }
  }

  function load(range) {
    const week = { ...range, granularity: "week" };
    return Promise.all([
      getJSON("/metrics/dora", range).then((r) => r.data),
      getAllPages("/metrics/team", week),
      getAllPages("/metrics/developers", week),
      getAllPages("/metrics/repositories", week),
      getJSON("/ai-reviews/summary", range).then((r) => r.data),
      getJSON("/metrics/cycle-time", range).then((r) => r.data),
    ]).then(([dora, team, developers, repositories, aiReviews, cycleTime]) => (
      { dora, team, developers, repositories, aiReviews, cycleTime }
    ));
  }

  // Tiles -----------------------------------------------------------------------------------

  const TILES = {
    deployment_frequency: {
      value: (k) => (k.per_day >= 1 ? `${decimal.format(k.per_day)} / day`
        : `${decimal.format(k.per_week)} / week`),
      detail: (k) => `${count(k.deployments)} deployments`,
      measure: (k) => k.per_day,
      higherIsBetter: true,
    },
    lead_time: {
      value: (k) => duration(k.median_s),
      detail: (k) => `${count(k.pull_requests)} pull requests`,
      measure: (k) => k.median_s,
    },
    change_failure_rate: {
      value: (k) => percent(k.rate),
      detail: (k) => `${count(k.failed)} of ${count(k.deployments)} deployments failed`,
      measure: (k) => k.rate,
    },
    time_to_restore: {
      value: (k) => duration(k.median_s),
      detail: (k) => `${count(k.incidents)} incidents`,
      measure: (k) => k.median_s,
    },
  };

  function trend(key, current, previous, spec) {
    const now = current && spec.measure(current);
    const before = previous && spec.measure(previous);
    if (now === null || now === undefined || before === null || before === undefined) {
      return { text: "no previous period to compare", direction: "none" };
    }
    if (now === before) return { text: "= same as the previous period", direction: "same" };
    const up = now > before;
    const better = up === Boolean(spec.higherIsBetter);
    const change = before === 0 ? "" : ` ${decimal.format(Math.abs((now - before) / before) * 100)}%`;
    return {
      text: `${up ? "▲" : "▼"}${change} vs the previous period (${better ? "better" : "worse"})`,
      direction: better ? "better" : "worse",
    };
  }

  function renderTiles(dora) {
    for (const [key, spec] of Object.entries(TILES)) {
      const tile = document.getElementById(`tile-${key}`);
      const current = dora[key] || {};
      const category = (current.category || "").toUpperCase();
      tile.dataset.category = category;
      tile.querySelector(".tile-value").textContent = spec.value(current);
      tile.querySelector(".tile-detail").textContent = spec.detail(current);
      tile.querySelector(".tile-category").textContent = category
        ? category.charAt(0) + category.slice(1).toLowerCase() : "Not enough data";
      const t = trend(key, current, (dora.previous || {})[key], spec);
      const trendNode = tile.querySelector(".tile-trend");
      trendNode.textContent = t.text;
      trendNode.dataset.direction = t.direction;
    }
  }

  // Charts ----------------------------------------------------------------------------------

  const durationAxis = { beginAtZero: true, ticks: { precision: 0, callback: (v) => duration(v) } };
  const durationTooltip = {
    callbacks: { label: (c) => `${c.dataset.label}: ${duration(c.parsed.y ?? c.parsed.x)}` },
  };

  function draw(name, config) {
    const drawn = config.data.datasets.some((d) => d.data.some((v) => v !== null && v !== 0));
    const note = document.getElementById(`note-${name}`);
    if (note && name !== "aiRisk") note.textContent = drawn ? "" : "(nothing in this range)";
    const existing = charts[name];
    if (existing) {
      existing.data = config.data;
      existing.update();
      return;
    }
    const canvas = document.getElementById(`chart-${name}`);
    charts[name] = new Chart(canvas, {
      ...config,
      options: {
        maintainAspectRatio: false,
        animation: false, // drawn at once: ranges switch quickly and screenshots are complete
        ...config.options,
        plugins: { legend: { position: "bottom" }, ...(config.options || {}).plugins },
      },
    });
  }

  function series(label, values, color, extra) {
    return { label, data: values, backgroundColor: color, borderColor: color, ...extra };
  }

  function renderCharts({ team, developers, aiReviews, cycleTime }) {
    const labels = team.map((p) => p.period_start);
    const line = { spanGaps: true, tension: 0.2, pointRadius: 4 };

    draw("deployments", {
      type: "bar",
      data: { labels, datasets: [
        series("Deployments", team.map((p) => p.deployments), COLORS.blue),
        series("Failed", team.map((p) => p.failed_deployments), COLORS.red),
      ] },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    draw("leadTime", {
      type: "line",
      data: { labels, datasets: [
        series("Lead time", team.map((p) => p.lead_time_median_s), COLORS.purple, line),
      ] },
      options: { scales: { y: durationAxis }, plugins: { tooltip: durationTooltip } },
    });
    draw("changeFailureRate", {
      type: "line",
      data: { labels, datasets: [
        series("Change failure rate", team.map((p) => (p.change_failure_rate == null ? null
          : p.change_failure_rate * 100)), COLORS.red, line),
      ] },
      options: { scales: { y: { beginAtZero: true, suggestedMax: 100,
        ticks: { callback: (v) => `${v}%` } } } },
    });
    draw("timeToRestore", {
      type: "line",
      data: { labels, datasets: [
        series("Time to restore", team.map((p) => p.time_to_restore_median_s), COLORS.orange, line),
      ] },
      options: { scales: { y: durationAxis }, plugins: { tooltip: durationTooltip } },
    });
    draw("cycleTime", {
      type: "bar",
      data: { labels, datasets: [
        series("Coding", team.map((p) => p.coding_time_median_s), COLORS.blue),
        series("Pickup", team.map((p) => p.pickup_time_median_s), COLORS.yellow),
        series("Review", team.map((p) => p.review_time_median_s), COLORS.purple),
        series("Deploy", team.map((p) => p.deploy_time_median_s), COLORS.teal),
      ] },
      options: {
        scales: { x: { stacked: true }, y: { ...durationAxis, stacked: true } },
        plugins: { tooltip: durationTooltip },
      },
    });
    const cycle = (cycleTime.stages || {}).cycle || {};
    if (cycle.median_s != null) {
      document.getElementById("note-cycleTime").textContent = `(whole range: ${duration(
        cycle.median_s)} median cycle over ${count(cycleTime.pull_requests)} pull requests)`;
    }
    draw("throughput", {
      type: "bar",
      data: { labels, datasets: [
        series("Opened", team.map((p) => p.prs_opened), COLORS.blue),
        series("Merged", team.map((p) => p.prs_merged), COLORS.green),
      ] },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });

    const reviewers = totalsByDeveloper(developers)
      .filter((d) => d.reviews_given > 0)
      .sort((a, b) => b.reviews_given - a.reviews_given);
    draw("reviewLoad", {
      type: "bar",
      data: {
        labels: reviewers.map((d) => d.user.login),
        datasets: [series("Reviews given", reviewers.map((d) => d.reviews_given), COLORS.teal)],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });

    const levels = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];
    draw("aiRisk", {
      type: "doughnut",
      data: {
        labels: levels.map((l) => l.charAt(0) + l.slice(1).toLowerCase()),
        datasets: [{
          label: "Pull requests",
          data: levels.map((l) => (aiReviews.by_level || {})[l] || 0),
          backgroundColor: levels.map((l) => RISK_COLORS[l]),
        }],
      },
    });
    document.getElementById("note-aiRisk").textContent = aiReviews.reviews
      ? `(${count(aiReviews.reviews)} review${aiReviews.reviews === 1 ? "" : "s"}, average score ${
        decimal.format(aiReviews.average_score)})`
      : "(no reviews in this range)";
  }

  // Tables ----------------------------------------------------------------------------------

  function median(values) {
    const sorted = values.filter((v) => v !== null && v !== undefined).sort((a, b) => a - b);
    if (!sorted.length) return null;
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  const DEVELOPER_COUNTS = ["commits", "prs_opened", "prs_merged", "reviews_given",
    "review_comments", "additions", "deletions"];

  function totalsByDeveloper(rows) {
    const byUser = new Map();
    for (const row of rows) {
      // An unlinked contributor (a commit e-mail no user owns) has no id: their name part.
      const who = row.unlinked ? `unlinked:${row.user.login}` : row.user.id;
      const total = byUser.get(who)
        || { user: row.user, cycleTimes: [], ...Object.fromEntries(DEVELOPER_COUNTS.map((k) => [k, 0])) };
      for (const k of DEVELOPER_COUNTS) total[k] += row[k] || 0;
      total.cycleTimes.push(row.cycle_time_median_s);
      byUser.set(who, total);
    }
    return [...byUser.values()];
  }

  function fillTable(id, rows, cells) {
    const tbody = document.querySelector(`#${id} tbody`);
    tbody.replaceChildren();
    if (!rows.length) {
      const tr = tbody.insertRow();
      const td = tr.insertCell();
      td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
      td.textContent = "No activity in this range.";
      return;
    }
    for (const row of rows) {
      const tr = tbody.insertRow();
      cells(row).forEach((value, i) => {
        const cell = i === 0 ? document.createElement("th") : tr.insertCell();
        if (i === 0) {
          cell.scope = "row";
          tr.appendChild(cell);
        }
        cell.textContent = value;
      });
    }
  }

  const REPOSITORY_COUNTS = ["commits", "prs_opened", "prs_merged", "prs_closed", "deployments"];

  function totalsByRepository(rows) {
    const byRepo = new Map();
    for (const row of [...rows].sort((a, b) => a.period_start.localeCompare(b.period_start))) {
      const total = byRepo.get(row.repository.id) || { repository: row.repository, contributors: 0,
        ...Object.fromEntries(REPOSITORY_COUNTS.map((k) => [k, 0])) };
      for (const k of REPOSITORY_COUNTS) total[k] += row[k] || 0;
      total.contributors = Math.max(total.contributors, row.contributors || 0);
      total.open_prs = row.open_prs; // the latest period's state
      total.open_issues = row.open_issues;
      byRepo.set(row.repository.id, total);
    }
    return [...byRepo.values()];
  }

  function renderTables({ developers, repositories }) {
    const people = totalsByDeveloper(developers)
      .sort((a, b) => b.commits - a.commits || a.user.login.localeCompare(b.user.login));
    fillTable("developers-table", people, (d) => [
      d.user.name ? `${d.user.name} (${d.user.login})` : d.user.login,
      count(d.commits), count(d.prs_opened), count(d.prs_merged), count(d.reviews_given),
      count(d.review_comments), `+${count(d.additions)} / −${count(d.deletions)}`,
      duration(median(d.cycleTimes)),
    ]);
    const repos = totalsByRepository(repositories)
      .sort((a, b) => a.repository.full_name.localeCompare(b.repository.full_name));
    fillTable("repositories-table", repos, (r) => [
      r.repository.full_name, count(r.commits), count(r.prs_opened), count(r.prs_merged),
      count(r.prs_closed), count(r.contributors), count(r.open_prs), count(r.open_issues),
      count(r.deployments),
    ]);
  }

  // Range and organization ------------------------------------------------------------------

  const form = document.getElementById("range-form");
  const fromInput = document.getElementById("range-from");
  const toInput = document.getElementById("range-to");
  const errorBanner = document.getElementById("load-error");

  async function refresh() {
    const range = { from: fromInput.value, to: toInput.value };
    const query = new URLSearchParams(range);
    history.replaceState(null, "", `${location.pathname}?${query}`);
    body.dataset.state = "loading";
    errorBanner.hidden = true;
    try {
      const data = await load(range);
      renderTiles(data.dora);
      renderCharts(data);
      renderTables(data);
      body.dataset.state = "ready";
    } catch (error) {
      errorBanner.textContent = `Could not load the metrics: ${error.message}`;
      errorBanner.hidden = false;
      body.dataset.state = "error";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (fromInput.value > toInput.value) {
      [fromInput.value, toInput.value] = [toInput.value, fromInput.value];
    }
    refresh();
  });

  for (const button of form.querySelectorAll("button[data-days]")) {
    button.addEventListener("click", () => {
      const end = toInput.value ? new Date(`${toInput.value}T00:00:00Z`) : new Date();
      const start = new Date(end.getTime() - (Number(button.dataset.days) - 1) * 86400000);
      fromInput.value = start.toISOString().slice(0, 10);
      refresh();
    });
  }

  document.getElementById("org-switcher").addEventListener("change", (event) => {
    location.assign(`${event.target.value}?${new URLSearchParams({
      from: fromInput.value, to: toInput.value })}`);
  });

  refresh();
}());
