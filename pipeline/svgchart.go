package pipeline

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// The report's charts are inline SVG written here, so report.html needs no
// script, stylesheet or font from anywhere. Every drawn data point carries
// its value in a <title> (a tooltip), and every series and chart names
// where its numbers come from (data-source: a file of the run folder,
// data-key: the field), so a test can count the points against the source.

// chartPalette is a colour-blind-safe palette (Okabe–Ito), in series order.
var chartPalette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}

func seriesColour(i int) string { return chartPalette[i%len(chartPalette)] }

// Chart geometry, in SVG user units.
const (
	chartW, chartH                       = 560, 240
	padLeft, padRight, padTop, padBottom = 56, 16, 14, 38
)

// lineSeries is one line of a line chart: points (x, y), all finite.
type lineSeries struct {
	Name   string
	Key    string // the field of the source log
	X, Y   []float64
	Dashed bool
	Bold   bool // drawn thicker (e.g. the total beside its parts)
}

// lineChart plots series against the step.
type lineChart struct {
	ID, Title, XLabel, YLabel string
	Source                    string // the log file, relative to the run folder
	Series                    []lineSeries
	Note                      string // shown under the chart
}

// axis maps data values to pixels with round tick values.
type axis struct {
	lo, hi   float64
	from, to float64 // pixels
	ticks    []float64
}

func newAxis(lo, hi, from, to float64, want int, integer bool) axis {
	// A range within rounding of its values (a signal of 1 ± a few ulps:
	// Σcov/Σvar of one reward) is drawn as a constant: its ticks would all
	// read alike, and a step below the values' ulp never advanced the loop
	// below (report hung, allocating ticks).
	if !(hi-lo > 1e-9*math.Max(math.Abs(lo), math.Abs(hi))) {
		c := lo + (hi-lo)/2
		pad := math.Max(0.5, 1e-6*math.Abs(c))
		lo, hi = c-pad, c+pad
		if lo == 0 && hi == 1 { // a constant 0.5 stays centred
			lo, hi = 0, 1
		}
	}
	step := niceStep((hi - lo) / float64(want))
	if integer {
		step = math.Max(1, step) // steps are counted: no tick at 1.5
	}
	a := axis{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step, from: from, to: to}
	for i := 0; i <= 4*want; i++ { // bounded: a range too wide for float64 gives a few ticks, not a hang
		v := a.lo + float64(i)*step
		if v > a.hi+step/2 {
			break
		}
		a.ticks = append(a.ticks, roundTo(v, step))
	}
	return a
}

func (a axis) px(v float64) float64 {
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// niceStep rounds a raw tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func roundTo(v, step float64) float64 {
	digits := math.Max(0, -math.Floor(math.Log10(step))+1)
	f := math.Pow(10, digits)
	return math.Round(v*f) / f
}

func formatTick(v float64) string {
	s := fmt.Sprintf("%.4g", v)
	if s == "-0" {
		return "0"
	}
	return s
}

// tickLabels formats an axis's ticks with the fewest significant digits
// (at least formatTick's 4) that tell each tick from its neighbours.
func tickLabels(ticks []float64) []string {
	out := make([]string, len(ticks))
	for p := 4; p <= 17; p++ {
		distinct := true
		for i, t := range ticks {
			out[i] = fmt.Sprintf("%.*g", p, t)
			if out[i] == "-0" {
				out[i] = "0"
			}
			distinct = distinct && (i == 0 || out[i] != out[i-1])
		}
		if distinct {
			break
		}
	}
	return out
}

// frame draws the axes, grid lines and labels of a chart.
func frame(b *strings.Builder, x, y axis, xLabel, yLabel string, xTicks bool) {
	yl := tickLabels(y.ticks)
	for i, t := range y.ticks {
		py := y.px(t)
		fmt.Fprintf(b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padLeft, chartW-padRight, py, py)
		fmt.Fprintf(b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`, padLeft-6, py+4, yl[i])
	}
	if xTicks {
		xl := tickLabels(x.ticks)
		for i, t := range x.ticks {
			px := x.px(t)
			fmt.Fprintf(b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, px, chartH-padBottom+16, xl[i])
		}
	}
	fmt.Fprintf(b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, chartW-padRight, chartH-padBottom, chartH-padBottom)
	fmt.Fprintf(b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, padLeft, padTop, chartH-padBottom)
	if xLabel != "" {
		fmt.Fprintf(b, `<text class="label" x="%d" y="%d" text-anchor="middle">%s</text>`, (padLeft+chartW-padRight)/2, chartH-4, html.EscapeString(xLabel))
	}
	if yLabel != "" {
		fmt.Fprintf(b, `<text class="label" transform="translate(12,%d) rotate(-90)" text-anchor="middle">%s</text>`, (padTop+chartH-padBottom)/2, html.EscapeString(yLabel))
	}
}

func svgOpen(b *strings.Builder, id, title string) {
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, chartW, chartH, chartW, chartH, html.EscapeString(title))
}

// legend is an HTML legend under a chart.
func legend(b *strings.Builder, names []string, dashed []bool) {
	b.WriteString(`<div class="legend">`)
	for i, n := range names {
		style := "background:" + seriesColour(i)
		if i < len(dashed) && dashed[i] {
			style = "border-top:2px dashed " + seriesColour(i) + ";height:0"
		}
		fmt.Fprintf(b, `<span><i style="%s"></i>%s</span>`, style, html.EscapeString(n))
	}
	b.WriteString(`</div>`)
}

// maxDots is the most points a series draws as dots (tooltips); longer
// series draw the line alone.
const maxDots = 400

// render writes the chart as a <figure> with its SVG and legend.
func (c lineChart) render(b *strings.Builder) {
	lo, hi := math.Inf(1), math.Inf(-1)
	xlo, xhi := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			lo, hi = math.Min(lo, s.Y[i]), math.Max(hi, s.Y[i])
			xlo, xhi = math.Min(xlo, s.X[i]), math.Max(xhi, s.X[i])
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi, xlo, xhi = 0, 1, 0, 1
	}
	x := newAxis(xlo, xhi, padLeft, chartW-padRight, 6, true)
	y := newAxis(lo, hi, chartH-padBottom, padTop, 4, false)
	fmt.Fprintf(b, `<figure class="chart" id="%s" data-source="%s"><figcaption>%s</figcaption>`, html.EscapeString(c.ID), html.EscapeString(c.Source), html.EscapeString(c.Title))
	svgOpen(b, c.ID, c.Title)
	frame(b, x, y, c.XLabel, c.YLabel, true)
	var names []string
	var dashed []bool
	for i, s := range c.Series {
		names, dashed = append(names, s.Name), append(dashed, s.Dashed)
		col := seriesColour(i)
		pts := make([]string, len(s.X))
		for j := range s.X {
			pts[j] = fmt.Sprintf("%.1f,%.1f", x.px(s.X[j]), y.px(s.Y[j]))
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(b, `<g data-series="%s" data-key="%s" data-n="%d">`, html.EscapeString(s.Name), html.EscapeString(s.Key), len(s.X))
		width := 1.6
		if s.Bold {
			width = 3
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%.1f"%s points="%s"/>`, col, width, dash, strings.Join(pts, " "))
		if len(s.X) <= maxDots {
			for j := range s.X {
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.2" fill="%s"><title>%s, step %s: %.4g</title></circle>`,
					x.px(s.X[j]), y.px(s.Y[j]), col, html.EscapeString(s.Name), formatTick(s.X[j]), s.Y[j])
			}
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	legend(b, names, dashed)
	if c.Note != "" {
		fmt.Fprintf(b, `<p class="note">%s</p>`, html.EscapeString(c.Note))
	}
	b.WriteString(`</figure>`)
}

// intervalPoint is one model's value with its 95% interval.
type intervalPoint struct {
	Model string
	Value float64
	CI    [2]float64
}

// intervalChart plots each model's metric in training order, with its
// interval as a whisker, and each rule as a horizontal line with a band.
type intervalChart struct {
	ID, Title, YLabel string
	Source            string
	Models, Rules     []intervalPoint
}

func (c intervalChart) render(b *strings.Builder) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range append(append([]intervalPoint{}, c.Models...), c.Rules...) {
		lo, hi = math.Min(lo, math.Min(p.Value, p.CI[0])), math.Max(hi, math.Max(p.Value, p.CI[1]))
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	y := newAxis(lo, hi, chartH-padBottom, padTop, 4, false)
	right := chartW - padRight - 120 // room for the rules' names
	slot := float64(right-padLeft) / float64(max(1, len(c.Models)))
	fmt.Fprintf(b, `<figure class="chart" id="%s" data-source="%s"><figcaption>%s</figcaption>`, html.EscapeString(c.ID), html.EscapeString(c.Source), html.EscapeString(c.Title))
	svgOpen(b, c.ID, c.Title)
	frame(b, axis{}, y, "", c.YLabel, false)
	labelY := ruleLabelYs(c.Rules, y)
	for i, p := range c.Rules {
		col := seriesColour(len(c.Models) + i)
		y0, y1, yv := y.px(p.CI[1]), y.px(p.CI[0]), y.px(p.Value)
		fmt.Fprintf(b, `<g data-model="%s" class="rule">`, html.EscapeString(p.Model))
		fmt.Fprintf(b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s" opacity="0.12"/>`, padLeft, y0, right-padLeft, math.Max(1, y1-y0), col)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.6" stroke-dasharray="6 3"><title>%s: %.4g [%.4g, %.4g]</title></line>`,
			padLeft, right, yv, yv, col, html.EscapeString(p.Model), p.Value, p.CI[0], p.CI[1])
		fmt.Fprintf(b, `<text class="tick" x="%d" y="%.1f" fill="%s">%s %.3f</text></g>`, right+4, labelY[i], col, html.EscapeString(p.Model), p.Value)
	}
	for i, p := range c.Models {
		cx := float64(padLeft) + slot*(float64(i)+0.5)
		col := seriesColour(i)
		fmt.Fprintf(b, `<g data-model="%s">`, html.EscapeString(p.Model))
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, cx, cx, y.px(p.CI[0]), y.px(p.CI[1]), col)
		for _, v := range p.CI {
			fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, cx-6, cx+6, y.px(v), y.px(v), col)
		}
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"><title>%s: %.4g [%.4g, %.4g]</title></circle>`, cx, y.px(p.Value), col, html.EscapeString(p.Model), p.Value, p.CI[0], p.CI[1])
		fmt.Fprintf(b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text></g>`, cx, chartH-padBottom+16, html.EscapeString(p.Model))
	}
	b.WriteString(`</svg></figure>`)
}

// ruleLabelYs places each rule's name beside its line, moved down where
// it would overlap the name above (rules that tie, as the demo's
// profile_reading and teacher at accuracy 1, wrote one name over the other).
func ruleLabelYs(rules []intervalPoint, y axis) []float64 {
	const lineGap = 11 // the tick font's line height
	order := make([]int, len(rules))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return y.px(rules[order[a]].Value) < y.px(rules[order[b]].Value) })
	out := make([]float64, len(rules))
	for k, i := range order {
		out[i] = y.px(rules[i].Value) + 4
		if k > 0 && out[i] < out[order[k-1]]+lineGap {
			out[i] = out[order[k-1]] + lineGap
		}
	}
	return out
}

// barChart draws grouped bars: one group per category, one bar per series.
type barChart struct {
	ID, Title, YLabel string
	Source            string
	Categories        []string
	Series            []string
	Values            [][]float64 // [series][category]
	YMax              float64     // 0: from the data
}

// barExtra is the room a bar chart adds below the plot for its slanted
// category names.
const barExtra = 56

func (c barChart) render(b *strings.Builder) {
	hi := c.YMax
	for _, vs := range c.Values {
		for _, v := range vs {
			hi = math.Max(hi, v)
		}
	}
	y := newAxis(0, hi, chartH-padBottom, padTop, 4, false)
	base := chartH - padBottom // the plot's bottom edge
	group := float64(chartW-padRight-padLeft) / float64(max(1, len(c.Categories)))
	bar := group * 0.8 / float64(max(1, len(c.Series)))
	fmt.Fprintf(b, `<figure class="chart" id="%s" data-source="%s"><figcaption>%s</figcaption>`, html.EscapeString(c.ID), html.EscapeString(c.Source), html.EscapeString(c.Title))
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, chartW, chartH+barExtra, chartW, chartH+barExtra, html.EscapeString(c.Title))
	frame(b, axis{}, y, "", c.YLabel, false)
	for s, name := range c.Series {
		fmt.Fprintf(b, `<g data-series="%s" data-n="%d">`, html.EscapeString(name), len(c.Categories))
		for k, cat := range c.Categories {
			v := c.Values[s][k]
			x := float64(padLeft) + group*float64(k) + group*0.1 + bar*float64(s)
			top := y.px(v)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %.3f</title></rect>`,
				x, top, math.Max(0.5, bar-1), math.Max(0, y.px(0)-top), seriesColour(s), html.EscapeString(name), html.EscapeString(cat), v)
		}
		b.WriteString(`</g>`)
	}
	for k, cat := range c.Categories {
		x := float64(padLeft) + group*(float64(k)+0.5)
		fmt.Fprintf(b, `<text class="tick cat" x="%.1f" y="%d" text-anchor="end" transform="rotate(-35 %.1f %d)">%s</text>`, x+4, base+14, x+4, base+14, html.EscapeString(shorten(cat, 18)))
	}
	b.WriteString(`</svg>`)
	legend(b, c.Series, nil)
	b.WriteString(`</figure>`)
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
