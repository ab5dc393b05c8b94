package ui

import (
	"fmt"
	"sort"
	"strings"

	"github.com/partnerhub/partnerhub/hub"
)

// chart is a horizontal bar chart rendered as inline SVG by the "chart"
// template.
type chart struct {
	Title  string
	Bars   []bar
	Height int
}

// bar is one bar; W and Y are SVG user units in a 400-wide box.
type bar struct {
	Label, Value string
	Y, W         int
	Class        string
}

const (
	chartBarArea = 150 // the bars start at x=140 and are at most this wide
	chartRow     = 26
)

type point struct {
	label, value string
	n            int64
	class        string
}

func newChart(title string, ps []point) chart {
	var max int64
	for _, p := range ps {
		if p.n > max {
			max = p.n
		}
	}
	c := chart{Title: title, Height: chartRow*len(ps) + 8}
	for i, p := range ps {
		w := 0
		if max > 0 && p.n > 0 {
			w = int(p.n * chartBarArea / max)
			if w < 2 {
				w = 2
			}
		}
		c.Bars = append(c.Bars, bar{Label: p.label, Value: p.value, Y: 4 + i*chartRow, W: w, Class: p.class})
	}
	return c
}

func partnerLabel(r reportRow) string {
	l := r.PartnerName
	if l == "" {
		l = r.PartnerID
	}
	if r.PartnerCode != "" {
		l += " (" + r.PartnerCode + ")"
	}
	if r := []rune(l); len(r) > 18 {
		l = string(r[:17]) + "…"
	}
	return l
}

// reportCharts draws a report: clicks per partner, and per currency the
// conversions and revenue per partner and the commissions by status.
func reportCharts(rows []reportRow) []chart {
	if len(rows) == 0 {
		return nil
	}
	var clicks []point
	convs := map[string][]point{}
	revenue := map[string][]point{}
	status := map[string]*[4]int64{}
	for _, r := range rows {
		clicks = append(clicks, point{label: partnerLabel(r), value: fmt.Sprint(r.Clicks), n: r.Clicks})
		for _, cr := range r.Currencies {
			cur := strings.ToUpper(cr.Currency)
			convs[cur] = append(convs[cur], point{label: partnerLabel(r), value: fmt.Sprint(cr.Conversions), n: cr.Conversions})
			revenue[cur] = append(revenue[cur], point{label: partnerLabel(r), value: hub.FormatMinor(cr.RevenueMinor, cur) + " " + cur, n: cr.RevenueMinor})
			st := status[cur]
			if st == nil {
				st = &[4]int64{}
				status[cur] = st
			}
			st[0] += cr.Commissions.PendingMinor
			st[1] += cr.Commissions.HeldMinor
			st[2] += cr.Commissions.ApprovedMinor
			st[3] += cr.Commissions.PaidMinor
		}
	}
	cs := []chart{newChart("Clicks", clicks)}
	curs := make([]string, 0, len(convs))
	for cur := range convs {
		curs = append(curs, cur)
	}
	sort.Strings(curs)
	for _, cur := range curs {
		cs = append(cs, newChart("Conversions ("+cur+")", convs[cur]), newChart("Revenue ("+cur+")", revenue[cur]))
		st := status[cur]
		var ps []point
		for i, name := range []string{"pending", "held", "approved", "paid"} {
			ps = append(ps, point{label: name, value: hub.FormatMinor(st[i], cur) + " " + cur, n: st[i], class: name})
		}
		cs = append(cs, newChart("Commissions by status ("+cur+")", ps))
	}
	return cs
}
