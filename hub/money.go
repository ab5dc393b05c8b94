package hub

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// isoExponents maps ISO 4217 alphabetic codes to their minor-unit digits
// as ISO publishes them (list one, 2026-01-01), not as CLDR does: CLDR
// gives IDR, COP and ISK the digits people write, payment providers send
// the ISO ones. Codes whose minor unit is "N.A." (XAU, XDR, XXX …) are
// left out: no payment is made in them. Provider exceptions (Stripe sends
// ISK, HUF, TWD and UGX with two decimals) belong to the connectors.
var isoExponents = map[string]int{
	// Zero minor-unit digits.
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0,
	"KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0,
	"XAF": 0, "XOF": 0, "XPF": 0,

	// Three.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,

	// Four.
	"CLF": 4, "UYW": 4,

	// Two.
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2,
	"AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BMD": 2, "BND": 2,
	"BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2,
	"BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CNY": 2,
	"COP": 2, "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DKK": 2,
	"DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2,
	"FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GTQ": 2,
	"GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2,
	"INR": 2, "IRR": 2, "JMD": 2, "KES": 2, "KGS": 2, "KHR": 2, "KPW": 2,
	"KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2,
	"MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2,
	"MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2,
	"MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
	"PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2,
	"RON": 2, "RSD": 2, "RUB": 2, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2,
	"SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2,
	"STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2,
	"TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "USD": 2,
	"USN": 2, "UYU": 2, "UZS": 2, "VED": 2, "VES": 2, "WST": 2, "XAD": 2,
	"XCD": 2, "XCG": 2, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,

	// Withdrawn recently but still found in stored payloads, refunds and
	// replays of older payments: ANG (2025, now XCG), BGN (2026, now EUR),
	// HRK (2023, now EUR), SLL (now SLE), ZWL (2024, now ZWG), CUC (2021).
	"ANG": 2, "BGN": 2, "CUC": 2, "HRK": 2, "SLL": 2, "ZWL": 2,
}

// Exponent returns the number of minor-unit digits of an ISO 4217
// currency, in any letter case, and whether the code is known.
func Exponent(currency string) (int, bool) {
	e, ok := isoExponents[strings.ToUpper(currency)]
	return e, ok
}

// ParseDecimal converts a decimal amount in major units ("409.94",
// "-12.5", "1000") into minor units of currency, exactly and without
// floats. The syntax is an optional sign, digits, and optionally a point
// followed by digits: no exponent, spaces or thousands separators. Digits
// beyond the currency's exponent are accepted only if they are zeros
// ("1000.00" JPY is 1000). Errors wrap ErrUnparsable.
func ParseDecimal(s, currency string) (int64, error) {
	exp, ok := Exponent(currency)
	if !ok {
		return 0, fmt.Errorf("parsing amount %q: unknown currency %q: %w", s, currency, ErrUnparsable)
	}
	fail := func(reason string) (int64, error) {
		return 0, fmt.Errorf("parsing amount %q as %s: %s: %w", s, strings.ToUpper(currency), reason, ErrUnparsable)
	}
	rest := s
	neg := false
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	intPart, frac, hasPoint := strings.Cut(rest, ".")
	if !IsDigits(intPart) || (hasPoint && !IsDigits(frac)) {
		return fail("not a decimal number")
	}
	if len(frac) > exp {
		if strings.Trim(frac[exp:], "0") != "" {
			return fail(fmt.Sprintf("more than %d decimal places", exp))
		}
		frac = frac[:exp]
	}
	// Minor units are the integer digits followed by the fraction padded
	// to exp digits.
	digits := intPart + frac + strings.Repeat("0", exp-len(frac))
	var v uint64
	for i := 0; i < len(digits); i++ {
		hi, lo := bits.Mul64(v, 10)
		lo, carry := bits.Add64(lo, uint64(digits[i]-'0'), 0)
		if hi != 0 || carry != 0 || lo > math.MaxInt64 {
			return fail("out of range")
		}
		v = lo
	}
	if neg {
		return -int64(v), nil
	}
	return int64(v), nil
}

// FormatMinor renders minor units as a decimal in major units, the
// inverse of ParseDecimal: FormatMinor(40994, "USD") is "409.94",
// FormatMinor(-5, "BHD") is "-0.005". An unknown currency is shown with
// two decimals.
func FormatMinor(amount int64, currency string) string {
	exp, ok := Exponent(currency)
	if !ok {
		exp = 2
	}
	var mag uint64
	sign := ""
	if amount < 0 {
		sign = "-"
		mag = uint64(-(amount + 1)) + 1 // no overflow for MinInt64
	} else {
		mag = uint64(amount)
	}
	digits := strconv.FormatUint(mag, 10)
	if exp == 0 {
		return sign + digits
	}
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	cut := len(digits) - exp
	return sign + digits[:cut] + "." + digits[cut:]
}

// MulDivRound returns x × num / den rounded half-up (halves away from
// zero), computed exactly in 128 bits even when x × num overflows int64.
// It panics if den <= 0 or if the result does not fit in an int64, like
// integer division by zero: amounts of money never come near either.
func MulDivRound(x, num, den int64) int64 {
	if den <= 0 {
		panic("hub.MulDivRound: den must be positive")
	}
	neg := (x < 0) != (num < 0)
	hi, lo := bits.Mul64(absU64(x), absU64(num))
	d := uint64(den)
	qHi, r := hi/d, hi%d
	q, r := bits.Div64(r, lo, d)
	if r >= d-r { // r ≥ d/2 without overflow: round the half away from zero
		q, qHi = addCarry(q, qHi)
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++ // MinInt64
	}
	if qHi != 0 || q > limit {
		panic("hub.MulDivRound: result overflows int64")
	}
	if neg {
		return -int64(q) // q == 1<<63 wraps to MinInt64, which is right
	}
	return int64(q)
}

// BPS returns amount × bps / 10000 (bps in basis points), rounded
// half-up: the commission on amount at a rate of bps.
func BPS(amount, bps int64) int64 {
	return MulDivRound(amount, bps, 10000)
}

func absU64(v int64) uint64 {
	if v < 0 {
		return uint64(-(v + 1)) + 1
	}
	return uint64(v)
}

func addCarry(lo, hi uint64) (uint64, uint64) {
	lo, c := bits.Add64(lo, 1, 0)
	return lo, hi + c
}

// IsDigits reports whether s is one or more ASCII digits.
func IsDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
