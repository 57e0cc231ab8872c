package server

import (
	"testing"
	"time"
)

// TestDailyPriceSumsToTheMonth: every calendar month's daily shares add up
// to exactly the monthly price, leap February included, and no two days
// of a month differ by more than one unit (0.0001 dollars).
func TestDailyPriceSumsToTheMonth(t *testing.T) {
	for _, cents := range []int64{0, 1900, 4900, 14900, 1} {
		for _, year := range []int{2024, 2026} {
			for month := time.January; month <= time.December; month++ {
				var sum Money
				lo, hi := Money(1<<62), Money(-1)
				for d := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC); d.Month() == month; d = d.AddDate(0, 0, 1) {
					p := DailyPrice(cents, d.Add(13*time.Hour))
					sum += p
					lo, hi = min(lo, p), max(hi, p)
				}
				if sum != Money(cents*100) || hi-lo > 1 {
					t.Errorf("%d cents, %d-%02d: days add up to %s (shares %s..%s), want %s", cents, year, month, sum, lo, hi, Money(cents*100))
				}
			}
		}
	}
	if got := DailyPrice(4900, time.Date(2031, 3, 10, 0, 0, 0, 0, time.UTC)).String(); got != "1.5806" {
		t.Errorf("pro on 10 March = %s, want 1.5806", got)
	}
}

func TestMoneyString(t *testing.T) {
	for m, want := range map[Money]string{0: "0.0000", 1: "0.0001", 15806: "1.5806", 1490000: "149.0000", -1: "-0.0001", -123456: "-12.3456"} {
		if got := m.String(); got != want {
			t.Errorf("Money(%d) = %q, want %q", int64(m), got, want)
		}
	}
}
