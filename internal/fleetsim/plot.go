package fleetsim

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Series is a named line or set of points.
type Series struct {
	Name string
	X, Y []float64
	// Points draws markers only.
	Points bool
}

// PlotXY draws series on one chart and saves it (the format follows the
// file's extension: .svg, .png).
func PlotXY(path, title, xLabel, yLabel string, logX bool, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for i, s := range series {
		xy := make(plotter.XYs, 0, len(s.X))
		for k := range s.X {
			if math.IsNaN(s.X[k]) || math.IsNaN(s.Y[k]) || (logX && s.X[k] <= 0) {
				continue
			}
			xy = append(xy, plotter.XY{X: s.X[k], Y: s.Y[k]})
		}
		if len(xy) == 0 {
			continue
		}
		c := plotutil.Color(i)
		if s.Points {
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return err
			}
			sc.Color = c
			sc.Shape = plotutil.Shape(i)
			sc.Radius = vg.Points(4)
			p.Add(sc)
			p.Legend.Add(s.Name, sc)
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = c
		l.Dashes = plotutil.Dashes(i % 4)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// CDF is the empirical distribution of sorted values as a series,
// thinned to at most 400 points.
func CDF(name string, sorted []float64, total int) Series {
	s := Series{Name: name}
	step := max(1, len(sorted)/400)
	for i := 0; i < len(sorted); i += step {
		s.X = append(s.X, sorted[i])
		s.Y = append(s.Y, float64(i+1)/float64(total))
	}
	if n := len(sorted); n > 0 {
		s.X = append(s.X, sorted[n-1])
		s.Y = append(s.Y, float64(n)/float64(total))
	}
	return s
}

// InFlightSeries is each replica's requests in flight over time.
func InFlightSeries(res *Result) []Series {
	var names []string
	if len(res.Samples) > 0 {
		for k := range res.Samples[0].InFlight {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := make([]Series, len(names))
	for i, n := range names {
		out[i].Name = n
		for _, smp := range res.Samples {
			out[i].X = append(out[i].X, smp.At)
			out[i].Y = append(out[i].Y, float64(smp.InFlight[n]))
		}
	}
	return out
}
