"""The app's look: its style sheet, in one place (the Evaluate tab's rules come from `workbench.eval.views`, the
heatmaps' script from `workbench.viz`)."""

from __future__ import annotations

from workbench import viz
from workbench.eval import views as eval_views

APP_CSS = """
#wb-status .wb-error{background:#fdecea;border:1px solid #d55e00;border-radius:4px;padding:6px 10px;color:#611a15}
#wb-status{font-size:14px}
.wb-col{min-width:260px}
.wb-col .prose{font-size:14px}
.dark .js-plotly-plot .main-svg{filter:invert(.9) hue-rotate(180deg)}
"""
# Plotly figures are drawn server-side in one (light) template; in dark mode the charts are inverted with their hues
# turned back, so a chart is a dark surface with light text and the palette's colours, not a white box.


def page_style() -> str:
    """The <style> element the page starts with: the app's rules, the Evaluate tab's, then the light and dark
    colours of steps, markers and error boxes (`viz.APP_CSS`, last: it outranks Gradio's `.prose *` text colour)."""
    return f"<style>{APP_CSS}{eval_views.EVAL_CSS}{viz.APP_CSS}</style>"
