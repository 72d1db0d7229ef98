// The admin experiment page: polls GET /api/v1/experiments/{id}/live and redraws figures, the rater table and
// two line charts; the teacher-mode buttons switch the mode with PATCH /api/v1/experiments/{id}.

const root = document.getElementById("experiment");
const experimentId = root.dataset.experimentId;
const pollMs = Number(root.dataset.pollMs) || 3000;
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
const experimentPath = `/api/v1/experiments/${experimentId}`;
const modeButtons = [...document.querySelectorAll("#mode-switch button[data-mode]")];
const modeMessage = document.getElementById("mode-message");
const SVG_NS = "http://www.w3.org/2000/svg";
// Polls that began before the last switch may carry the old mode; their mode is not shown.
let modeSwitchedAt = 0;

function percent(agreement) {
  if (agreement.rate === null) return "—";
  return `${Math.round(agreement.rate * 100)}% (${agreement.matches}/${agreement.compared})`;
}

function svgNode(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function niceNumber(value) {
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return `${(value / 1000).toFixed(magnitude >= 10000 ? 0 : 1)}k`;
  if (magnitude >= 10 || Number.isInteger(value)) return value.toFixed(0);
  return value.toFixed(2);
}

// A small hand-drawn line chart: points are [x, y]; axes with four ticks each.
function drawLineChart(svg, points, { xLabel, yMin = null, yMax = null }) {
  const width = 480;
  const height = 240;
  const margin = { left: 52, right: 14, top: 12, bottom: 40 };
  svg.replaceChildren();
  if (!points.length) {
    svg.append(svgNode("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "No data yet"));
    return;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [yMin ?? Math.min(...ys), yMax ?? Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - ((y - y0) / (y1 - y0)) * (height - margin.top - margin.bottom);
  const axes = svgNode("g", { class: "chart-axes" });
  for (let i = 0; i <= 4; i += 1) {
    const y = y0 + ((y1 - y0) * i) / 4;
    axes.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: sy(y), y2: sy(y), class: "chart-grid" }));
    axes.append(svgNode("text", { x: margin.left - 6, y: sy(y) + 4, "text-anchor": "end" }, niceNumber(y)));
    const x = x0 + ((x1 - x0) * i) / 4;
    axes.append(svgNode("text", { x: sx(x), y: height - margin.bottom + 16, "text-anchor": "middle" }, niceNumber(x)));
  }
  axes.append(svgNode("text", { x: (margin.left + width - margin.right) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  svg.append(axes);
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  svg.append(svgNode("path", { d: path, class: "chart-line" }));
  if (points.length <= 40) {
    for (const [x, y] of points) svg.append(svgNode("circle", { cx: sx(x), cy: sy(y), r: 3, class: "chart-dot" }));
  }
}

function accuracyAgainstLabels(series) {
  // Accuracy is recorded per training step; labels/count at the same step gives the x axis.
  const accuracy = series["reward/val_accuracy"] || [];
  const labelsAtStep = new Map((series["labels/count"] || []).map(([step, count]) => [step, count]));
  if (accuracy.length && accuracy.every(([step]) => labelsAtStep.has(step))) {
    return { points: accuracy.map(([step, value]) => [labelsAtStep.get(step), value]), xLabel: "labels" };
  }
  return { points: accuracy, xLabel: "training step" };
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function showMode(mode) {
  for (const button of modeButtons) {
    const current = button.dataset.mode === mode;
    button.classList.toggle("active", current);
    button.setAttribute("aria-pressed", String(current));
    if (current) document.getElementById("mode-hint").textContent = `${button.textContent}: ${button.dataset.hint}.`;
  }
  const tile = root.querySelector('[data-field="teacher_mode"]');
  if (tile) tile.textContent = mode;
}

function render(live, { withMode = true } = {}) {
  if (withMode) showMode(live.experiment.teacher_mode);
  const fields = {
    status: live.experiment.status,
    labels: live.experiment.label_budget ? `${live.counts.labels} / ${live.experiment.label_budget}` : String(live.counts.labels),
    pairs_pending: String(live.counts.pairs_pending),
    pairs_complete: String(live.counts.pairs_complete),
    checkpoint: live.experiment.latest_checkpoint_step === null ? "—" : `${live.experiment.latest_checkpoint_step} steps`,
    worker: live.experiment.owner_worker || "none",
    between_raters: percent(live.between_raters),
    with_teacher: percent(live.with_teacher),
  };
  for (const [name, value] of Object.entries(fields)) {
    const node = root.querySelector(`[data-field="${name}"]`);
    if (node) node.textContent = value;
  }
  const rows = live.raters.map((rater) => {
    const tr = document.createElement("tr");
    const name = rater.kind === "human" ? rater.name : `${rater.name} (${rater.kind})`;
    const mean = rater.mean_response_ms === null ? "—" : `${(rater.mean_response_ms / 1000).toFixed(1)} s`;
    tr.append(cell(name), cell(String(rater.labels)), cell(String(rater.skips)), cell(percent(rater.with_others)),
      cell(percent(rater.with_teacher)), cell(mean));
    return tr;
  });
  document.getElementById("rater-rows").replaceChildren(...rows);
  drawLineChart(document.getElementById("plot-return"), live.series["env/true_return"] || [], { xLabel: "training step" });
  const { points, xLabel } = accuracyAgainstLabels(live.series);
  drawLineChart(document.getElementById("plot-accuracy"), points, { xLabel, yMin: 0, yMax: 1 });
}

async function switchMode(mode) {
  modeButtons.forEach((button) => { button.disabled = true; });
  modeMessage.classList.remove("error");
  modeMessage.textContent = "Switching…";
  try {
    const response = await fetch(experimentPath, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
      body: JSON.stringify({ teacher_mode: mode }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `the server answered ${response.status}`);
    modeSwitchedAt = performance.now();
    showMode(body.teacher_mode);
    modeMessage.textContent = `Switched to ${body.teacher_mode}.`;
  } catch (error) {
    modeMessage.classList.add("error");
    modeMessage.textContent = `Could not switch the mode (${error.message}).`;
  } finally {
    modeButtons.forEach((button) => { button.disabled = false; });
  }
}

for (const button of modeButtons) button.addEventListener("click", () => switchMode(button.dataset.mode));

async function poll() {
  const startedAt = performance.now();
  try {
    const response = await fetch(`${experimentPath}/live`, { credentials: "same-origin" });
    if (response.ok) {
      render(await response.json(), { withMode: startedAt > modeSwitchedAt });
      document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } else {
      document.getElementById("updated").textContent = `Update failed (${response.status}); retrying.`;
    }
  } catch {
    document.getElementById("updated").textContent = "Server unreachable; retrying.";
  }
  setTimeout(poll, pollMs);
}

render(JSON.parse(document.getElementById("initial-data").textContent));
setTimeout(poll, pollMs);
