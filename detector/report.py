"""The scan report: a self-contained HTML page per file (verdict, reliability notes, the evidence streams
per window where scan stacked them, C2PA panel, the most suspicious frames with Grad-CAM heatmaps, a timeline
of p(fake) and r), and the CSV of a folder scan."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detector.evidence.clip import WindowEvidence
    from detector.results import FaceTrack, ScanError, ScanResult

STREAM_WORDS = {"frames": "face-crop classifier",
                "dynamics": "clip dynamics (background, noise, mouth, frame repeats)",
                "provenance": "C2PA provenance"}


def results_csv(results: list[ScanResult | ScanError]) -> str:
    """One row per scanned file: verdict, p(fake), manifest state, frames with a face, or the error."""
    import csv

    from detector.results import ScanError

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "verdict", "probability_fake", "manifest", "frames_with_face", "frames", "error"])
    for r in results:
        if isinstance(r, ScanError):
            w.writerow([r.file, "", "", "", "", "", r.error])
            continue
        face = r.verdict_face
        w.writerow([r.file, r.verdict.label, r.verdict.probability_fake, r.manifest.get("state"),
                    sum(face.face_found), len(face.frames), ""])
    return buf.getvalue()


def _png(fig_or_array) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(fig_or_array, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _timeline(face: FaceTrack) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = face.frames
    p = [np.nan if v is None else v for v in face.fake_probability]
    r = [np.nan if v is None else v for v in face.realism]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(x, p, "o-", color="tab:red", label="fake probability (detector)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("p(fake)")
    ax2 = ax.twinx()
    ax2.plot(x, r, "s--", color="tab:blue", label="realism r (discriminator)")
    ax2.set_ylabel("r (higher = looks real)")
    for i, found in zip(x, face.face_found):
        if not found:
            ax.axvspan(i - 0.5, i + 0.5, color="grey", alpha=0.3)
    fig.legend(loc="upper right", fontsize=8)
    return _figure_uri(fig)


def _figure_uri(fig) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _p(value: float | None) -> str:
    return "no score" if value is None else f"{value:.3f}"


def _stream_p(w: WindowEvidence, name: str) -> float | None:
    return next((s.probability for s in w.scores if s.stream == name), None)


def _stream_names(result: ScanResult) -> list[str]:
    names = [s.stream for s in result.evidence] + [s.stream for w in result.windows for s in w.scores]
    return list(dict.fromkeys(names))


def _seconds(start: float, end: float) -> str:
    return f"{start:.1f}-{end:.1f} s"


def evidence_section(result: ScanResult) -> str:
    """The evidence streams: per stream its most suspicious window and explanation, and where the verdict
    came from (window, condition buckets, calibration); empty when scan scored no windows."""
    if not result.windows:
        return ""
    e, v = html.escape, result.verdict
    by_index = {w.index: w for w in result.windows}
    rows = ""
    for s in result.evidence:
        w = by_index.get(s.window)
        rows += (f"<tr><th>{e(s.stream)}<br><small>{e(STREAM_WORDS.get(s.stream, ''))}</small></th>"
                 f"<td>{_p(s.probability_fake)}</td><td>{_seconds(w.start, w.end) if w else '-'}</td>"
                 f"<td>{'yes' if s.in_verdict else 'no (shown only)'}</td><td>{e(s.explanation)}</td></tr>")
    where = ""
    if v.window:
        where = f"Most suspicious stretch: {_seconds(v.window['start'], v.window['end'])}. "
    if v.buckets:
        named = {"face": "face size", "bits": "compression (bits per pixel)", "length": "length"}
        kinds = ", ".join(f"{e(named.get(k, k))} {e(str(b))}" for k, b in v.buckets.items())
        where += (f"Its threshold was checked on real clips of the same conditions: {kinds} (fake from "
                  f"p(fake) {v.threshold + v.unsure_band:.3f}). ")
    cal = v.calibration
    where += (f"Calibration: a false-positive rate of {cal.fpr:.0%} on {cal.real_videos} real videos "
              f"({e(cal.set_on)}; measured there: {cal.measured_fpr:.1%})." if cal else
              "Calibration: none (the threshold is not calibrated for a false-positive rate).")
    return (f'\n<h2>Evidence</h2><p>{where}</p><table><tr><th>stream</th><th>p(fake) in its most '
            f'suspicious window</th><th>window</th><th>in the verdict</th><th>what it saw</th></tr>{rows}'
            f'</table>\n<h2>Windows</h2><img src="{_window_timeline(result)}" style="max-width:100%">'
            f'{_coverage_words(result)}{_window_table(result)}')


def _window_timeline(result: ScanResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = result.verdict
    fig, ax = plt.subplots(figsize=(8, 2.8))
    if v.window:
        ax.axvspan(v.window["start"], v.window["end"], color="gold", alpha=0.3, label="verdict's window")
    fused = [w for w in result.windows if w.probability_fake is not None]
    ax.hlines([w.probability_fake for w in fused], [w.start for w in fused], [w.end for w in fused],
              color="black", lw=4, label="fused p(fake)")
    mid = [(w.start + w.end) / 2 for w in result.windows]
    for name in _stream_names(result):
        p = [np.nan if (q := _stream_p(w, name)) is None else q for w in result.windows]
        if np.isfinite(p).any():
            ax.plot(mid, p, "o-", lw=1, ms=4, label=f"{name} p(fake)")
    ax.axhline(v.threshold, color="grey", ls="--", lw=1, label="threshold")
    ax.axhline(v.threshold + v.unsure_band, color="tab:red", ls=":", lw=1, label="fake from")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("seconds")
    ax.set_ylabel("p(fake)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _figure_uri(fig)


def _coverage_words(result: ScanResult) -> str:
    c = result.coverage
    if c is None or c.complete:
        return ""
    return (f"<p>These {c.windows} windows were spread over a long file ({c.seconds:.0f} s), with gaps "
            "between them: not every stretch was scored.</p>")


def _window_table(result: ScanResult) -> str:
    e, v = html.escape, result.verdict
    names = _stream_names(result)
    head = "".join(f"<th>{e(n)} p(fake)</th>" for n in names)
    rows = ""
    for w in result.windows:
        top = v.window is not None and v.window.get("index") == w.index
        cells = "".join(f"<td>{_p(_stream_p(w, n))}</td>" for n in names)
        mark = ' style="background:#fff3c4" title="the verdict\'s window"' if top else ""
        rows += (f"<tr{mark}><td>{w.index}</td>"
                 f"<td>{_seconds(w.start, w.end)}</td><td>{len(w.frames)}</td><td>{w.face_found}</td>"
                 f"<td>{_p(w.probability_fake)}</td>{cells}</tr>")
    return (f"<table><tr><th>window</th><th>seconds</th><th>frames read</th><th>frames with face</th>"
            f"<th>fused p(fake)</th>{head}</tr>{rows}</table>")


def _row(key: str, value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(text)}</td></tr>"


def html_report(result: ScanResult) -> str:
    """A self-contained HTML page (images inlined) of one scan result."""
    e = html.escape
    v, m = result.verdict, result.manifest
    face = result.verdict_face
    samples = face.samples
    thumbs = ""
    if samples is not None:
        ok = np.flatnonzero(samples.found)
        for k in ok[np.linspace(0, len(ok) - 1, min(8, len(ok))).round().astype(int)] if len(ok) else []:
            pk = face.fake_probability[k]
            thumbs += (f'<figure><img src="{_png(samples.crops[k])}"><figcaption>frame '
                       f'{int(samples.indices[k])}<br>p={pk:.2f}</figcaption></figure>')
    heat = ""
    if samples is not None and face.heatmaps:
        from detector.evidence.heatmap import overlay

        for k, hm in face.heatmaps.items():
            heat += (f'<figure><img src="{_png(overlay(samples.crops[k], hm))}"><figcaption>frame '
                     f'{int(samples.indices[k])}<br>p={face.fake_probability[k]:.2f}</figcaption>'
                     '</figure>')
        heat = ("<h2>Where the detector looks</h2><p>Grad-CAM of the fake logit on the most "
                f"suspicious frames (red: most weight).</p>{heat}")
    cal = v.calibration
    calibrated = (f" Calibrated for a false-positive rate of {cal.fpr:.0%} on {cal.real_videos} real "
                  f"videos ({e(cal.set_on)}; measured there: {cal.measured_fpr:.1%})." if cal else
                  " Not calibrated for a false-positive rate.")
    colour = {"fake": "#c0392b", "real": "#27ae60", "unsure": "#e67e22"}.get(v.label, "#7f8c8d")
    prob = "-" if v.probability_fake is None else f"{v.probability_fake:.3f}"
    gen = m.get("generation")
    signer = m.get("signer") or {}
    named = " / ".join(x for x in (signer.get("common_name"), signer.get("issuer")) if x)
    # Anyone's own CA can copy the names; the certificates' fingerprints tell signers apart.
    panel = (("state", m.get("state")), ("codes", m.get("codes")), ("signer", named),
             ("signer certificate sha256", signer.get("cert_sha256")),
             ("issuer certificate sha256", signer.get("issuer_sha256")),
             ("signer subject", signer.get("subject_dn")),
             ("claim generator", m.get("claim_generator")), ("generation", gen),
             ("message", m.get("message")))
    rows = "".join(_row(k, val) for k, val in panel if val)
    missing = "".join(f"<li>frame {x.frame}: {e(x.reason)}</li>" for x in face.frames_without_face)
    models = "".join(_row(k, val) for k, val in result.models.to_dict().items())
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    title = e(Path(result.file).name)
    evidence = evidence_section(result)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>sfumato scan: {title}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
.verdict{{font-size:1.6em;color:white;background:{colour};padding:.4em .8em;border-radius:6px;
display:inline-block}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:2px 8px;border-bottom:1px solid #ddd;vertical-align:top}}
figure{{display:inline-block;margin:4px;text-align:center;font-size:.8em}}</style></head><body>
<h1>sfumato scan</h1><p><code>{e(result.file)}</code><br>sha256 <code>{e(result.sha256)}</code></p>
<div class="verdict">{e(v.label)}: p(fake) = {prob}</div>
<p>Verdict from the {e(v.method)} probability: fake at or above {v.threshold + v.unsure_band:.4f},
unsure from {v.threshold - v.unsure_band:.4f}, real below.{calibrated}</p><ul>{notes}</ul>{evidence}
<h2>Faces</h2>{thumbs or '<p>No face found.</p>'}{heat}
<h2>Timeline</h2><img src="{_timeline(face)}" style="max-width:100%">
{f'<h3>Frames without a face</h3><ul>{missing}</ul>' if missing else ''}
<h2>Provenance (C2PA)</h2><table>{rows}</table>
<h2>Models</h2><table>{models}</table>
<p style="color:#888">Scanned in {result.seconds} s.</p></body></html>
"""
