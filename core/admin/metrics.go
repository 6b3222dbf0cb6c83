package admin

import (
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// Metric names. Counters the parts keep themselves (SMTP servers, spool,
// engine) are read at scrape time by collector; the delivery attempts and
// DSNs arrive through the Observer.
const (
	metricAccepted       = "gateway_messages_accepted_total"
	metricRejected       = "gateway_messages_rejected_total"
	metricSessionsActive = "gateway_smtp_sessions_active"
	metricSessionsTotal  = "gateway_smtp_sessions_total"
	metricRefusals       = "gateway_smtp_refusals_total"
	metricTLSIn          = "gateway_smtp_tls_handshakes_total"
	metricTLSOut         = "gateway_delivery_tls_handshakes_total"
	metricQueueMessages  = "gateway_queue_messages"
	metricQueueOldest    = "gateway_queue_oldest_seconds"
	metricSpoolCommits   = "gateway_spool_commits_total"
	metricSpoolFsyncs    = "gateway_spool_fsyncs_total"
	metricSpoolFile      = "gateway_spool_file_bytes"
	metricDeliveries     = "gateway_deliveries_total"
	metricInFlight       = "gateway_delivery_in_flight"
	metricAttempts       = "gateway_delivery_attempts_total"
	metricDuration       = "gateway_delivery_duration_seconds"
	metricDSNs           = "gateway_dsn_total"
	metricBuildInfo      = "gateway_build_info"
)

// durationBuckets cover a local transport (milliseconds) up to a slow
// remote MTA (minutes).
var durationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// newRegistry returns the Admin's own registry (never the global default
// one) with every gateway metric, the Go runtime and process collectors, and
// the observer that feeds the delivery metrics.
func newRegistry(a *Admin) (*prometheus.Registry, *observer) {
	o := &observer{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricAttempts,
			Help: "Delivery attempts per recipient, by outcome class (delivered, temporary, permanent) and the TLS level of the SMTP session (dane, mta-sts, verify, encrypt, opportunistic, none; empty for local transports).",
		}, []string{"class", "tls_policy"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricDuration,
			Help:    "How long delivery attempts took.",
			Buckets: durationBuckets,
		}),
		dsns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricDSNs,
			Help: "DSN messages queued, by their gravest action (failed, delayed, relayed, delivered).",
		}, []string{"action"}),
	}
	// Series that exist from the start, so rates work from the first scrape.
	for _, c := range []delivery.Class{delivery.Delivered, delivery.Temporary, delivery.Permanent} {
		o.attempts.WithLabelValues(c.String(), "")
	}
	for _, act := range []dsn.Action{dsn.ActionFailed, dsn.ActionDelayed, dsn.ActionRelayed, dsn.ActionDelivered} {
		o.dsns.WithLabelValues(string(act))
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        metricBuildInfo,
		Help:        "Always 1; the labels give the gateway's version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": a.opt.Version, "goversion": runtime.Version()},
	})
	build.Set(1)

	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		o.attempts, o.duration, o.dsns, build,
		newCollector(a),
	)
	return r, o
}

// observer implements delivery.Observer with Prometheus metrics.
type observer struct {
	attempts *prometheus.CounterVec
	duration prometheus.Histogram
	dsns     *prometheus.CounterVec
}

// Attempted counts one recipient's attempt by class and TLS level and
// observes its duration. The domain is not a label: it would grow without
// bound; the TLS levels are a handful.
func (o *observer) Attempted(domain string, class delivery.Class, tlsPolicy string, took time.Duration) {
	o.attempts.WithLabelValues(class.String(), tlsPolicy).Inc()
	o.duration.Observe(took.Seconds())
}

// Bounced counts one DSN by action.
func (o *observer) Bounced(action dsn.Action) {
	o.dsns.WithLabelValues(string(action)).Inc()
}

// collector reads the counters of the SMTP servers, the spool and the
// engine at scrape time.
type collector struct {
	a *Admin

	accepted, rejected, sessionsActive, sessionsTotal, refusals *prometheus.Desc
	tlsIn, tlsOut                                               *prometheus.Desc
	queueMessages, queueOldest, commits, fsyncs, spoolFile      *prometheus.Desc
	deliveries, inFlight                                        *prometheus.Desc
	cluster                                                     clusterMetrics
}

func newCollector(a *Admin) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		a:              a,
		accepted:       d(metricAccepted, "Messages queued by the SMTP servers."),
		rejected:       d(metricRejected, "Messages refused by the SMTP servers after their content was received."),
		sessionsActive: d(metricSessionsActive, "SMTP sessions open now."),
		sessionsTotal:  d(metricSessionsTotal, "SMTP sessions started."),
		refusals: d(metricRefusals, "SMTP error replies by the command they answered, the reply code and the enhanced code (relay denied, rate limits, AUTH failures).",
			"command", "code", "enhanced"),
		tlsIn: d(metricTLSIn, "TLS handshakes of the SMTP listeners (STARTTLS, implicit TLS, and implicit-TLS connections turned away at a limit) by result (full, resumed: "+
			"a session resumed, which costs the server a fraction of a full handshake; failed) and protocol version.", "result", "version"),
		tlsOut: d(metricTLSOut, "STARTTLS handshakes of outbound SMTP connections by result (full, resumed, failed) and protocol version.",
			"result", "version"),
		queueMessages: d(metricQueueMessages, "Messages in the queue."),
		queueOldest:   d(metricQueueOldest, "Age of the oldest message in the queue; 0 when it is empty."),
		commits:       d(metricSpoolCommits, "Messages committed to the spool."),
		fsyncs:        d(metricSpoolFsyncs, "Spool write transactions, each one fsync (group commit)."),
		spoolFile: d(metricSpoolFile, "Size of the spool's database file, which is mapped into memory: the pages of it "+
			"that were read count in the process's RSS as file cache, not heap."),
		deliveries: d(metricDeliveries, "Recipients by delivery result: delivered, deferred (attempts that ended temporary) and failed.", "result"),
		inFlight:   d(metricInFlight, "Messages being delivered now."),
		cluster:    newClusterMetrics(),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.accepted, c.rejected, c.sessionsActive, c.sessionsTotal, c.refusals, c.tlsIn,
		c.queueMessages, c.queueOldest, c.commits, c.fsyncs, c.spoolFile,
	} {
		ch <- d
	}
	if c.a.opt.Engine != nil {
		ch <- c.deliveries
		ch <- c.inFlight
	}
	if c.a.opt.Out != nil {
		ch <- c.tlsOut
	}
	if c.a.opt.Cluster != nil {
		c.cluster.describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}

	var sum smtp.ServerStats
	for _, s := range c.a.opt.Servers {
		sum.Add(s.Stats())
	}
	counter(c.accepted, float64(sum.MessagesAccepted))
	counter(c.rejected, float64(sum.MessagesRejected))
	gauge(c.sessionsActive, float64(sum.SessionsActive))
	counter(c.sessionsTotal, float64(sum.SessionsTotal))
	for k, v := range sum.Refusals {
		counter(c.refusals, float64(v), k.Command, strconv.Itoa(k.Code), k.Enhanced)
	}
	for k, v := range withCommonHandshakes(sum.TLSHandshakes) {
		counter(c.tlsIn, float64(v), k.Result, k.Version)
	}
	if out := c.a.opt.Out; out != nil {
		for k, v := range withCommonHandshakes(out.TLSHandshakes()) {
			counter(c.tlsOut, float64(v), k.Result, k.Version)
		}
	}

	q := c.a.opt.Queue
	gauge(c.queueMessages, float64(q.Len()))
	if age, err := c.oldest(); err != nil {
		c.a.log.Warn("admin: metrics: oldest message", "err", err)
	} else {
		gauge(c.queueOldest, age.Seconds())
	}
	qs := q.Stats()
	counter(c.commits, float64(qs.Commits))
	counter(c.fsyncs, float64(qs.Batches))
	gauge(c.spoolFile, float64(qs.FileBytes))

	if e := c.a.opt.Engine; e != nil {
		es := e.Stats()
		counter(c.deliveries, float64(es.Delivered), "delivered")
		counter(c.deliveries, float64(es.Deferred), "deferred")
		counter(c.deliveries, float64(es.Failed), "failed")
		gauge(c.inFlight, float64(es.InFlight))
	}
	if cl := c.a.opt.Cluster; cl != nil {
		c.cluster.collect(ch, cl.ClusterStats())
	}
}

// commonHandshakes are the handshake series that exist from the start, so
// that rates work from the first scrape.
var commonHandshakes = []smtp.TLSHandshake{
	{Result: smtp.HandshakeFull, Version: "TLSv1.3"},
	{Result: smtp.HandshakeResumed, Version: "TLSv1.3"},
	{Result: smtp.HandshakeFull, Version: "TLSv1.2"},
	{Result: smtp.HandshakeResumed, Version: "TLSv1.2"},
	{Result: smtp.HandshakeFailed},
}

// withCommonHandshakes is counts with a 0 for each of commonHandshakes it
// lacks. It may change counts (a copy of the counter's).
func withCommonHandshakes(counts map[smtp.TLSHandshake]int64) map[smtp.TLSHandshake]int64 {
	if counts == nil {
		counts = make(map[smtp.TLSHandshake]int64, len(commonHandshakes))
	}
	for _, k := range commonHandshakes {
		counts[k] += 0
	}
	return counts
}

// oldest is the age of the first message in arrival order; List stops
// after it, so a scrape reads one record.
func (c *collector) oldest() (time.Duration, error) {
	var created time.Time
	err := c.a.opt.Queue.List(func(m *queue.Message) bool {
		created = m.Created
		return false
	})
	if err != nil || created.IsZero() {
		return 0, err
	}
	return max(c.a.now().Sub(created), 0), nil
}

var _ delivery.Observer = (*observer)(nil)
var _ prometheus.Collector = (*collector)(nil)
