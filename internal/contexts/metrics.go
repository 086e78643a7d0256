package contexts

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus metrics of contexts and executions.
type Metrics struct{ m *metrics }

type metrics struct {
	active         prometheus.Gauge
	creates        *prometheus.CounterVec
	createSeconds  prometheus.Histogram
	executions     *prometheus.CounterVec
	executeSeconds prometheus.Histogram
	poolReady      *prometheus.GaugeVec
	poolTakes      *prometheus.CounterVec
}

// NewMetrics makes the metrics and registers them with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandboxd_contexts_active",
			Help: "Contexts that exist now.",
		}),
		creates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_context_creates_total",
			Help: "Context creations, by result (ok, error).",
		}, []string{"result"}),
		createSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandboxd_context_create_duration_seconds",
			Help:    "Time to create a context, up to a kernel ready to execute.",
			Buckets: []float64{.05, .1, .25, .5, 1, 1.5, 2, 3, 5, 10, 30, 60},
		}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_executions_total",
			Help: "Executions, by outcome (ok, error, timeout, kernel_died, unavailable).",
		}, []string{"outcome"}),
		executeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandboxd_execute_duration_seconds",
			Help:    "Time code ran, from its start to its last output.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		poolReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandboxd_pool_ready",
			Help: "Kernels ready in the warm pool, by language.",
		}, []string{"language"}),
		poolTakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_pool_takes_total",
			Help: "Creates that found a ready kernel in the pool (hit) or had to start one (miss), by language.",
		}, []string{"language", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.creates, m.createSeconds, m.executions, m.executeSeconds, m.poolReady, m.poolTakes)
	}
	return &Metrics{m: m}
}
