package edges

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// JSON forms of the probe results: durations in milliseconds, errors as
// their text.

type measurementJSON struct {
	Candidate     protocol.Candidate `json:"candidate"`
	RTTMillis     float64            `json:"rtt_ms"`
	ConnectMillis float64            `json:"connect_ms"`
	// Throughput is in bytes per second.
	Throughput float64 `json:"throughput"`
	Healthy    bool    `json:"healthy"`
	Error      string  `json:"error,omitempty"`
}

type scoredJSON struct {
	measurementJSON
	EstimateMillis float64 `json:"estimate_ms"`
	Assumed        bool    `json:"assumed_throughput,omitempty"`
	Weight         float64 `json:"weight"`
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMillis(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func (m Measurement) toJSON() measurementJSON {
	j := measurementJSON{
		Candidate:     m.Candidate,
		RTTMillis:     millis(m.RTT),
		ConnectMillis: millis(m.Connect),
		Throughput:    m.Throughput,
		Healthy:       m.Healthy,
	}
	if m.Err != nil {
		j.Error = m.Err.Error()
	}
	return j
}

func (j measurementJSON) measurement() Measurement {
	m := Measurement{
		Candidate:  j.Candidate,
		RTT:        fromMillis(j.RTTMillis),
		Connect:    fromMillis(j.ConnectMillis),
		Throughput: j.Throughput,
		Healthy:    j.Healthy,
	}
	if j.Error != "" {
		m.Err = errors.New(j.Error)
	}
	return m
}

// MarshalJSON writes {"candidate", "rtt_ms", "connect_ms", "throughput"
// (bytes/s), "healthy", "error"}.
func (m Measurement) MarshalJSON() ([]byte, error) { return json.Marshal(m.toJSON()) }

// UnmarshalJSON reads what MarshalJSON writes (Err becomes a plain error
// with the same text).
func (m *Measurement) UnmarshalJSON(b []byte) error {
	var j measurementJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = j.measurement()
	return nil
}

// MarshalJSON writes the measurement's fields and "estimate_ms",
// "assumed_throughput", "weight".
func (s Scored) MarshalJSON() ([]byte, error) {
	return json.Marshal(scoredJSON{
		measurementJSON: s.Measurement.toJSON(),
		EstimateMillis:  millis(s.Estimate),
		Assumed:         s.Assumed,
		Weight:          s.Weight,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Scored) UnmarshalJSON(b []byte) error {
	var j scoredJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Scored{Measurement: j.measurementJSON.measurement(), Estimate: fromMillis(j.EstimateMillis), Assumed: j.Assumed, Weight: j.Weight}
	return nil
}

type reportFields Report // Report without its methods

type reportJSON struct {
	reportFields
	TookMillis float64 `json:"took_ms"`
}

// MarshalJSON writes the report's fields and "took_ms".
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{reportFields(r), millis(r.Took)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	var j reportJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Report(j.reportFields)
	r.Took = fromMillis(j.TookMillis)
	return nil
}
