// The compose view's map: villages drawn locally as points (no tile or script hosts), a circle,
// a polygon or codes drawn over them, the gateway's preview of which villages that covers, and
// the area handed back to the compose form to send to.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const METRES_PER_DEGREE = 111320;
const NAMED_UP_TO = 40; // villages: up to this many, every name is written on the map

// An equirectangular projection around the city's bounding box, in metres: a circle's radius
// is the same number on the map as on the ground.
function mapProjection(points) {
  const lats = points.map((p) => p[0]);
  const lons = points.map((p) => p[1]);
  const north = Math.max(...lats);
  const south = Math.min(...lats);
  const west = Math.min(...lons);
  const east = Math.max(...lons);
  const kx = METRES_PER_DEGREE * Math.cos(((north + south) / 2) * Math.PI / 180);
  const width = Math.max((east - west) * kx, 1000);
  const height = Math.max((north - south) * METRES_PER_DEGREE, 1000);
  const pad = Math.max(width, height) * 0.08;
  return {
    // Room on the right for the names written beside the points.
    viewBox: `${-pad} ${-pad} ${width + 3.5 * pad} ${height + 2 * pad}`,
    size: Math.max(width, height) + 2 * pad,
    xy: (lat, lon) => [(lon - west) * kx, (north - lat) * METRES_PER_DEGREE],
    latlon: (x, y) => [round6(north - y / METRES_PER_DEGREE), round6(west + x / kx)],
  };
}

function round6(n) {
  return Math.round(n * 1e6) / 1e6;
}

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// GeoJSON Polygon / MultiPolygon rings ([lon, lat]) as one SVG path.
function boundaryPath(boundary, projection) {
  const polygons = boundary.type === "MultiPolygon" ? boundary.coordinates : [boundary.coordinates];
  return polygons.flat().map((ring) => ring.map(([lon, lat], i) => {
    const [x, y] = projection.xy(lat, lon);
    return `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
  }).join(" ") + " Z").join(" ");
}

// Opens the map; `onChoose(area, villages)` receives the area and the villages it covers when
// the officer picks "이 지역으로 보내기".
function openAreaMap({ villages, districts, own, onChoose }) {
  const placed = villages.filter((v) => v.lat != null && v.lon != null);
  const corners = placed.map((v) => [v.lat, v.lon]);
  districts.forEach((d) => {
    if (d.lat != null && d.lon != null) corners.push([d.lat, d.lon]);
    if (d.boundary) {
      const rings = d.boundary.type === "MultiPolygon" ? d.boundary.coordinates.flat() : d.boundary.coordinates;
      rings.flat().forEach(([lon, lat]) => corners.push([lat, lon]));
    }
  });
  if (!corners.length) corners.push([35.18, 128.08]);
  const projection = mapProjection(corners);
  const dot = projection.size / 110;
  const radiusMax = Math.min(100000, Math.ceil(projection.size / 1000) * 1000);

  const dialog = document.createElement("dialog");
  dialog.className = "card area-map";
  dialog.setAttribute("aria-labelledby", "area-map-title");
  dialog.innerHTML = `
    <div class="area-map-head">
      <h2 id="area-map-title">지도에서 받을 마을 고르기</h2>
      <button type="button" class="btn" id="area-close">닫기</button>
    </div>
    <div class="area-map-body">
      <div class="area-map-canvas">
        <svg id="area-svg" viewBox="${projection.viewBox}" role="img"
          aria-label="마을 ${placed.length}곳의 지도. 고른 지역에 드는 마을은 오른쪽 목록에 모두 나옵니다."></svg>
        <p class="area-legend" aria-hidden="true"><span class="key own"></span>담당 마을
          <span class="key foreign"></span>다른 읍·면·동 <span class="key covered"></span>고른 지역에 드는 마을
          <span class="key outside"></span>담당 지역 밖</p>
        <p class="muted" id="area-hint"></p>
      </div>
      <div class="area-map-side">
        <div class="area-tools" role="radiogroup" aria-label="지역을 고르는 방법">
          <label><input type="radio" name="area-tool" value="circle" checked> 원</label>
          <label><input type="radio" name="area-tool" value="polygon"> 다각형</label>
          <label><input type="radio" name="area-tool" value="codes"> 코드</label>
        </div>
        <div data-tool="circle">
          <label class="field"><span>중심 마을 (지도를 눌러도 됩니다)</span>
            <select id="area-centre"><option value="">고르세요</option>
              ${placed.map((v) => `<option value="${esc(v.id)}">${esc(v.name)}</option>`).join("")}</select></label>
          <div class="field"><label for="area-radius">반지름 (미터)</label> <output id="area-radius-out" for="area-radius"></output>
            <input type="range" id="area-radius" min="100" max="${radiusMax}" step="100" value="${Math.min(2000, radiusMax)}"></div>
        </div>
        <div data-tool="polygon" hidden>
          <p class="muted">지도를 눌러 꼭짓점을 찍고 닫기를 누르세요. 점 <span id="area-points">0</span>개</p>
          <div class="button-row">
            <button type="button" class="btn" id="area-close-polygon">다각형 닫기</button>
            <button type="button" class="btn" id="area-undo">마지막 점 지우기</button>
          </div>
        </div>
        <div data-tool="codes" hidden>
          <label class="field"><span>법정동·행정동 코드 (쉼표로 구분)</span>
            <input type="text" id="area-codes" inputmode="numeric" placeholder="예: 4817025000"></label>
          <button type="button" class="btn" id="area-codes-preview">미리 보기</button>
        </div>
        <div id="area-result" class="area-result" role="status" aria-live="polite"></div>
        <ul id="area-list" class="area-list" aria-label="고른 지역에 드는 마을"></ul>
        <button type="button" class="btn primary" id="area-use" disabled>이 지역으로 보내기</button>
      </div>
    </div>`;
  document.body.append(dialog);
  const $ = (id) => dialog.querySelector(`#${id}`);
  const svg = $("area-svg");
  const layers = {};
  for (const name of ["districts", "shape", "names", "villages", "label"]) {
    layers[name] = svgEl("g", { class: `layer-${name}` });
    svg.append(layers[name]);
  }
  districts.filter((d) => d.boundary).forEach((d) => {
    const path = svgEl("path", { d: boundaryPath(d.boundary, projection), class: "district-boundary" });
    path.append(Object.assign(svgEl("title"), { textContent: d.name }));
    layers.districts.append(path);
  });
  const points = new Map();
  placed.forEach((v) => {
    const [x, y] = projection.xy(v.lat, v.lon);
    const point = svgEl("circle", {
      cx: x.toFixed(1), cy: y.toFixed(1), r: dot.toFixed(1),
      class: `village-point${own(v) ? "" : " foreign"}`, "data-village-point": v.id,
    });
    point.append(Object.assign(svgEl("title"), { textContent: v.name }));
    layers.villages.append(point);
    if (placed.length <= NAMED_UP_TO) {
      const name = svgEl("text", { x: (x + dot * 1.6).toFixed(1), y: (y + dot * 0.9).toFixed(1), class: "village-name", "font-size": (dot * 2.6).toFixed(1) });
      name.textContent = v.name;
      layers.names.append(name);
    }
    points.set(v.id, { point, x, y, village: v });
  });
  const label = svgEl("text", { class: "village-label", "font-size": (dot * 3.2).toFixed(1) });
  label.setAttribute("visibility", "hidden");
  layers.label.append(label);
  const showLabel = (id) => {
    const p = points.get(id);
    if (!p) return label.setAttribute("visibility", "hidden");
    label.textContent = p.village.name;
    label.setAttribute("x", (p.x + dot * 1.6).toFixed(1));
    label.setAttribute("y", (p.y - dot * 1.2).toFixed(1));
    label.setAttribute("visibility", "visible");
  };
  layers.villages.addEventListener("pointerover", (e) => showLabel(Number(e.target.dataset.villagePoint)));
  layers.villages.addEventListener("pointerout", () => showLabel(null));

  let tool = "circle";
  let centre = null;
  let polygon = [];
  let closed = false;
  let preview = null; // the last answer of /areas/preview, for the area now drawn
  let asked = 0;

  const radius = $("area-radius");
  const hint = $("area-hint");
  const hints = {
    circle: "지도를 눌러 원의 중심을 정하고, 그대로 끌거나 반지름 막대로 크기를 정하세요.",
    polygon: "지도를 눌러 꼭짓점을 차례로 찍으세요.",
    codes: "코드를 쓰고 미리 보기를 누르세요.",
  };

  function area() {
    if (tool === "circle" && centre) return { circle: { lat: centre[0], lon: centre[1], radius_m: Number(radius.value) } };
    if (tool === "polygon" && closed) return { polygon: polygon.map((p) => [...p]) };
    if (tool === "codes") {
      const codes = $("area-codes").value.split(/[\s,]+/).filter(Boolean);
      if (codes.length) return { codes };
    }
    return null;
  }

  function drawShape() {
    layers.shape.replaceChildren();
    $("area-radius-out").textContent = `${Number(radius.value).toLocaleString("ko-KR")} m`;
    $("area-points").textContent = String(polygon.length);
    if (tool === "circle" && centre) {
      const [x, y] = projection.xy(...centre);
      layers.shape.append(svgEl("circle", { cx: x, cy: y, r: radius.value, class: "area-shape" }));
      layers.shape.append(svgEl("circle", { cx: x, cy: y, r: dot * 0.7, class: "area-vertex" }));
    }
    if (tool === "polygon" && polygon.length) {
      const xy = polygon.map((p) => projection.xy(...p).map((n) => n.toFixed(1)).join(","));
      layers.shape.append(svgEl(closed ? "polygon" : "polyline", { points: xy.join(" "), class: "area-shape" }));
      xy.forEach((p) => {
        const [x, y] = p.split(",");
        layers.shape.append(svgEl("circle", { cx: x, cy: y, r: dot * 0.7, class: "area-vertex" }));
      });
    }
  }

  function render() {
    const covered = new Set(preview ? preview.villages.map((v) => v.id) : []);
    const outside = new Set(preview ? preview.outside_scope : []);
    points.forEach(({ point }, id) => {
      point.classList.toggle("covered", covered.has(id));
      point.classList.toggle("outside", outside.has(id));
    });
    const list = $("area-list");
    const result = $("area-result");
    const use = $("area-use");
    if (!preview) {
      list.replaceChildren();
      use.disabled = true;
      return;
    }
    list.innerHTML = preview.villages.map((v) => `<li data-area-village="${esc(v.id)}"
      class="${outside.has(v.id) ? "outside" : ""}">${esc(v.name)}${outside.has(v.id) ? ' <span class="badge off">담당 지역 밖</span>' : ""}</li>`).join("");
    if (!preview.villages.length) result.innerHTML = '<div class="notice warn">이 지역에 드는 마을이 없습니다.</div>';
    else if (outside.size) {
      result.innerHTML = `<div class="notice error">마을 ${preview.total}곳 중 ${outside.size}곳이 담당 지역 밖이라 보낼 수 없습니다.</div>`;
    } else result.innerHTML = `<div class="notice ok">마을 ${preview.total}곳이 이 지역에 듭니다.</div>`;
    use.disabled = !preview.villages.length || outside.size > 0;
  }

  // Asks the gateway what the drawn area covers; an older answer never overwrites a newer one.
  let timer = null;
  function ask(soon = false) {
    clearTimeout(timer);
    preview = null;
    render();
    const wanted = area();
    if (!wanted) {
      $("area-result").textContent = "";
      return;
    }
    const run = async () => {
      const mine = ++asked;
      try {
        const { body } = await session.request("areas/preview", { method: "POST", json: wanted });
        if (mine !== asked) return;
        preview = { ...body, asked: wanted };
        render();
      } catch (e) {
        if (mine === asked) $("area-result").innerHTML = `<div class="notice error">${esc(koreanError(e))}</div>`;
      }
    };
    timer = setTimeout(run, soon ? 0 : 250);
  }

  function setTool(next) {
    tool = next;
    dialog.querySelectorAll("[data-tool]").forEach((p) => { p.hidden = p.dataset.tool !== tool; });
    hint.textContent = hints[tool];
    drawShape();
    ask(true);
  }

  const onMap = (event) => new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
  // A circle: press for its centre, and drag out its radius (or set it with the slider).
  let dragging = null;
  svg.addEventListener("pointerdown", (event) => {
    if (tool !== "circle") return;
    const at = onMap(event);
    dragging = { x: at.x, y: at.y, moved: false };
    centre = projection.latlon(at.x, at.y);
    $("area-centre").value = "";
    svg.setPointerCapture(event.pointerId);
    drawShape();
    ask();
  });
  svg.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const at = onMap(event);
    const metres = Math.hypot(at.x - dragging.x, at.y - dragging.y);
    if (!dragging.moved && metres < dot * 2) return;
    dragging.moved = true;
    radius.value = String(Math.max(100, Math.round(metres / 100) * 100));
    drawShape();
    ask();
  });
  const endDrag = () => { dragging = null; };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("click", (event) => {
    if (tool !== "polygon") return;
    const at = onMap(event);
    if (closed) { polygon = []; closed = false; }
    polygon.push(projection.latlon(at.x, at.y));
    drawShape();
    ask();
  });
  dialog.querySelectorAll("input[name=area-tool]").forEach((r) => r.addEventListener("change", () => setTool(r.value)));
  $("area-centre").addEventListener("change", (event) => {
    const p = points.get(Number(event.target.value));
    if (!p) return;
    centre = [p.village.lat, p.village.lon];
    showLabel(p.village.id);
    drawShape();
    ask();
  });
  radius.addEventListener("input", () => { drawShape(); ask(); });
  $("area-close-polygon").addEventListener("click", () => {
    if (polygon.length < 3) {
      $("area-result").innerHTML = '<div class="notice error">꼭짓점을 세 개 이상 찍으세요.</div>';
      return;
    }
    closed = true;
    drawShape();
    ask(true);
  });
  $("area-undo").addEventListener("click", () => {
    closed = false;
    polygon.pop();
    drawShape();
    ask(true);
  });
  $("area-codes-preview").addEventListener("click", () => ask(true));
  $("area-codes").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); ask(true); }
  });
  $("area-use").addEventListener("click", () => {
    if (!preview) return;
    onChoose(preview.asked, preview.villages);
    dialog.close();
  });
  $("area-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());

  setTool("circle");
  dialog.showModal();
  return dialog;
}
