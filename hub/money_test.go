package hub

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestExponent(t *testing.T) {
	tests := []struct {
		currency string
		want     int
		ok       bool
	}{
		{"USD", 2, true},
		{"usd", 2, true},
		{"Eur", 2, true},
		{"JPY", 0, true},
		{"KRW", 0, true},
		{"ISK", 0, true},
		{"CLP", 0, true},
		{"VND", 0, true},
		{"UGX", 0, true},
		{"XOF", 0, true},
		{"BHD", 3, true},
		{"JOD", 3, true},
		{"KWD", 3, true},
		{"OMR", 3, true},
		{"TND", 3, true},
		{"LYD", 3, true},
		{"IQD", 3, true},
		{"CLF", 4, true},
		{"UYW", 4, true},
		{"IDR", 2, true}, // CLDR says 0
		{"COP", 2, true}, // CLDR says 0
		{"HUF", 2, true},
		{"TWD", 2, true},
		{"XCG", 2, true},
		{"ZWG", 2, true},
		{"XAU", 0, false}, // minor unit N.A.
		{"XXX", 0, false},
		{"ABC", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.currency, func(t *testing.T) {
			got, ok := Exponent(tt.currency)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Exponent(%q) = %d, %v; want %d, %v", tt.currency, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		name     string
		s        string
		currency string
		want     int64
	}{
		{"two decimals", "409.94", "USD", 40994},
		{"one decimal", "-12.5", "EUR", -1250},
		{"integer", "1000", "USD", 100000},
		{"plus sign", "+3.10", "GBP", 310},
		{"negative zero", "-0.00", "USD", 0},
		{"leading zeros", "007.05", "USD", 705},
		{"lowercase currency", "1.23", "usd", 123},
		{"trailing zeros beyond exponent", "409.9400", "USD", 40994},
		{"JPY integer", "1500", "JPY", 1500},
		{"JPY trailing zeros", "1500.00", "JPY", 1500},
		{"ISK is zero-digit", "990.0", "ISK", 990},
		{"BHD three digits", "1.234", "BHD", 1234},
		{"BHD short fraction", "1.2", "BHD", 1200},
		{"CLF four digits", "0.0001", "CLF", 1},
		{"IDR two digits", "15000.50", "IDR", 1500050},
		{"largest", "92233720368547758.07", "USD", math.MaxInt64},
		{"most negative", "-92233720368547758.07", "USD", -math.MaxInt64},
		{"large JPY", "9223372036854775807", "JPY", math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDecimal(tt.s, tt.currency)
			if err != nil {
				t.Fatalf("ParseDecimal(%q, %q): %v", tt.s, tt.currency, err)
			}
			if got != tt.want {
				t.Errorf("ParseDecimal(%q, %q) = %d, want %d", tt.s, tt.currency, got, tt.want)
			}
		})
	}
}

func TestParseDecimalInvalid(t *testing.T) {
	tests := []struct {
		name     string
		s        string
		currency string
	}{
		{"thousands separator", "1,000.00", "USD"},
		{"empty", "", "USD"},
		{"sign only", "-", "USD"},
		{"point only", ".", "USD"},
		{"no integer digits", ".5", "USD"},
		{"no fraction digits", "5.", "USD"},
		{"two points", "1.2.3", "USD"},
		{"exponent", "1e3", "USD"},
		{"spaces", " 1.00", "USD"},
		{"double sign", "--1", "USD"},
		{"letters", "12abc", "USD"},
		{"unicode digit", "١٢", "USD"},
		{"too many decimals", "1.005", "USD"},
		{"JPY with decimals", "1500.5", "JPY"},
		{"KRW with decimals", "100.01", "KRW"},
		{"BHD four decimals", "1.2345", "BHD"},
		{"overflow", "92233720368547758.08", "USD"},
		{"negative overflow", "-92233720368547758.08", "USD"},
		{"huge", "100000000000000000000000000", "JPY"},
		{"unknown currency", "1.00", "ABC"},
		{"no currency", "1.00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDecimal(tt.s, tt.currency)
			if err == nil {
				t.Fatalf("ParseDecimal(%q, %q) = %d, want an error", tt.s, tt.currency, got)
			}
			if !errors.Is(err, ErrUnparsable) {
				t.Errorf("error %v does not wrap ErrUnparsable", err)
			}
		})
	}
}

func TestMoneyFormatMinor(t *testing.T) {
	tests := []struct {
		amount   int64
		currency string
		want     string
	}{
		{40994, "USD", "409.94"},
		{-1250, "EUR", "-12.50"},
		{5, "USD", "0.05"},
		{-5, "USD", "-0.05"},
		{0, "USD", "0.00"},
		{1500, "JPY", "1500"},
		{-1500, "jpy", "-1500"},
		{1234, "BHD", "1.234"},
		{-5, "BHD", "-0.005"},
		{1, "CLF", "0.0001"},
		{math.MaxInt64, "USD", "92233720368547758.07"},
		{math.MinInt64, "USD", "-92233720368547758.08"},
		{123, "ABC", "1.23"},
	}
	for _, tt := range tests {
		t.Run(tt.want+" "+tt.currency, func(t *testing.T) {
			if got := FormatMinor(tt.amount, tt.currency); got != tt.want {
				t.Errorf("FormatMinor(%d, %q) = %q, want %q", tt.amount, tt.currency, got, tt.want)
			}
		})
	}
}

func TestMoneyFormatRoundTrip(t *testing.T) {
	for _, cur := range []string{"USD", "JPY", "BHD", "CLF"} {
		for _, v := range []int64{0, 1, -1, 9, 10, 99, 100, 101, -999, 123456789, math.MaxInt64, -math.MaxInt64} {
			s := FormatMinor(v, cur)
			got, err := ParseDecimal(s, cur)
			if err != nil || got != v {
				t.Errorf("ParseDecimal(FormatMinor(%d, %s) = %q) = %d, %v", v, cur, s, got, err)
			}
		}
	}
}

func TestMulDivRound(t *testing.T) {
	tests := []struct {
		name        string
		x, num, den int64
		want        int64
	}{
		{"exact", 1000, 3, 4, 750},
		{"half rounds up", 5, 1, 2, 3},
		{"negative half rounds away from zero", -5, 1, 2, -3},
		{"negative numerator half", 5, -1, 2, -3},
		{"both negative half", -5, -1, 2, 3},
		{"below half rounds down", 4, 1, 3, 1},   // 1.333
		{"above half rounds up", 5, 1, 3, 2},     // 1.667
		{"negative below half", -4, 1, 3, -1},    // -1.333
		{"negative above half", -5, 1, 3, -2},    // -1.667
		{"odd den just below half", 7, 1, 15, 0}, // 0.4667
		{"odd den just above half", 8, 1, 15, 1}, // 0.5333
		{"zero", 0, 123, 7, 0},
		{"den one", 42, 3, 1, 126},
		// x × num overflows int64 but the result does not.
		{"overflowing product", math.MaxInt64, 10000, 10000, math.MaxInt64},
		{"overflowing product negative", -math.MaxInt64, 10000, 10000, -math.MaxInt64},
		{"min int", math.MinInt64, 1, 1, math.MinInt64},
		{"large pro rata", 4_000_000_000_000_000, 3_000_000_000_000_000, 6_000_000_000_000_000, 2_000_000_000_000_000},
		{"large half", math.MaxInt64, 1, 2, 4611686018427387904}, // 4611686018427387903.5
		{"large negative half", -math.MaxInt64, 1, 2, -4611686018427387904},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MulDivRound(tt.x, tt.num, tt.den); got != tt.want {
				t.Errorf("MulDivRound(%d, %d, %d) = %d, want %d", tt.x, tt.num, tt.den, got, tt.want)
			}
		})
	}
}

// TestMulDivRoundMatchesBig cross-checks against math/big on random
// operands, including ones whose product overflows int64.
func TestMulDivRoundMatchesBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	operand := func() int64 {
		v := r.Int64() >> r.IntN(63)
		if r.IntN(2) == 0 {
			v = -v
		}
		return v
	}
	for range 20000 {
		x, num := operand(), operand()
		den := r.Int64N(math.MaxInt64>>r.IntN(63)) + 1
		want, ok := bigMulDivRound(x, num, den)
		if !ok {
			continue // result does not fit: MulDivRound panics
		}
		if got := MulDivRound(x, num, den); got != want {
			t.Fatalf("MulDivRound(%d, %d, %d) = %d, want %d", x, num, den, got, want)
		}
	}
}

func bigMulDivRound(x, num, den int64) (int64, bool) {
	p := new(big.Int).Mul(big.NewInt(x), big.NewInt(num))
	neg := p.Sign() < 0
	p.Abs(p)
	q, r := new(big.Int).QuoRem(p, big.NewInt(den), new(big.Int))
	if r.Lsh(r, 1).Cmp(big.NewInt(den)) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if neg {
		q.Neg(q)
	}
	return q.Int64(), q.IsInt64()
}

func TestMulDivRoundPanics(t *testing.T) {
	tests := []struct {
		name        string
		x, num, den int64
	}{
		{"zero den", 1, 1, 0},
		{"negative den", 1, 1, -1},
		{"result overflows", math.MaxInt64, 2, 1},
		{"negative result overflows", math.MinInt64, -1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("MulDivRound(%d, %d, %d) did not panic", tt.x, tt.num, tt.den)
				}
			}()
			MulDivRound(tt.x, tt.num, tt.den)
		})
	}
}

func TestBPS(t *testing.T) {
	tests := []struct {
		name        string
		amount, bps int64
		want        int64
	}{
		{"20 percent", 40994, 2000, 8199}, // 8198.8
		{"half cent rounds up", 50, 1000, 5},
		{"exact half", 5, 1000, 1},            // 0.5
		{"negative exact half", -5, 1000, -1}, // -0.5
		{"refund reverses", -40994, 2000, -8199},
		{"zero rate", 40994, 0, 0},
		{"full rate", 40994, 10000, 40994},
		{"fractional bps result below half", 1, 4999, 0},
		{"large amount", math.MaxInt64 / 2, 10000, math.MaxInt64 / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BPS(tt.amount, tt.bps); got != tt.want {
				t.Errorf("BPS(%d, %d) = %d, want %d", tt.amount, tt.bps, got, tt.want)
			}
		})
	}
}
