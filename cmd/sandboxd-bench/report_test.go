package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    float64
	}{
		{"p50 of 100", samples, 50, 50},
		{"p90 of 100", samples, 90, 90},
		{"p99 of 100", samples, 99, 99},
		{"p100 of 100", samples, 100, 100},
		{"p50 of 3", []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}, 50, 2},
		{"p99 of 3", []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}, 99, 3},
		{"p0 of 1", []time.Duration{1500 * time.Microsecond}, 0, 1.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := percentile(tt.samples, tt.p)
			if got == nil || *got != tt.want {
				t.Errorf("percentile = %v, want %v", got, tt.want)
			}
		})
	}
	if got := percentile(nil, 50); got != nil {
		t.Errorf("percentile of nothing = %v, want nil", *got)
	}
}
