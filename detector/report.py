"""The scan report: a self-contained HTML page per file (verdict, reliability notes, C2PA panel, the most
suspicious frames with Grad-CAM heatmaps, a timeline of p(fake) and r), and the CSV of a folder scan."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detector.scan import FaceTrack, ScanError, ScanResult


def results_csv(results: list[ScanResult | ScanError]) -> str:
    """One row per scanned file: verdict, p(fake), manifest state, frames with a face, or the error."""
    import csv

    from detector.scan import ScanError

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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>sfumato scan: {title}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
.verdict{{font-size:1.6em;color:white;background:{colour};padding:.4em .8em;border-radius:6px;
display:inline-block}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:2px 8px;border-bottom:1px solid #ddd;vertical-align:top}}
figure{{display:inline-block;margin:4px;text-align:center;font-size:.8em}}</style></head><body>
<h1>sfumato scan</h1><p><code>{e(result.file)}</code><br>sha256 <code>{e(result.sha256)}</code></p>
<div class="verdict">{e(v.label)}: p(fake) = {prob}</div>
<p>Verdict from the {e(v.method)} probability: fake at or above {v.threshold + v.unsure_band:.4f},
unsure from {v.threshold - v.unsure_band:.4f}, real below.{calibrated}</p><ul>{notes}</ul>
<h2>Faces</h2>{thumbs or '<p>No face found.</p>'}{heat}
<h2>Timeline</h2><img src="{_timeline(face)}" style="max-width:100%">
{f'<h3>Frames without a face</h3><ul>{missing}</ul>' if missing else ''}
<h2>Provenance (C2PA)</h2><table>{rows}</table>
<h2>Models</h2><table>{models}</table>
<p style="color:#888">Scanned in {result.seconds} s.</p></body></html>
"""
