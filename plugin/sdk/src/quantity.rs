//! Kubernetes quantities read exactly, for when a plugin must write one the
//! way Kubernetes does (Go's `resource.Quantity`): in its canonical form
//! (`String()`: `1000m` → `1`, `1.5Gi` → `1536Mi`, `0.5` → `500m`) or as a
//! whole number rounded up (`Value()`: `500m` → `1`).
//!
//! [`crate::resources::parse`] gives a float, good enough to compare
//! quantities; these keep every digit (to the nano, as Kubernetes does).
//!
//! ```ignore
//! assert_eq!(quantity::canonical("1.5Gi").as_deref(), Some("1536Mi"));
//! assert_eq!(quantity::value("2.1"), Some(3));
//! ```

/// How a quantity is written; the suffix it was given decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, `Gi`... (powers of 1024).
    BinarySi,
    /// `n`, `u`, `m`, none, `k`, `M`, `G`... (powers of 1000).
    DecimalSi,
    /// `e3`, `E-2`... (powers of 10).
    DecimalExponent,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// A quantity as a whole number of nano-units (rounded up, as Kubernetes
/// rounds anything finer), and the format it was written in. `None` when it
/// is not a quantity or is negative.
fn parse(quantity: &str) -> Option<(i128, Format)> {
    let quantity = quantity.trim();
    let quantity = quantity.strip_prefix('+').unwrap_or(quantity);
    let end = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let (mut mantissa, exponent, format) = match suffix {
        "" => (digits, 0, Format::DecimalSi),
        "n" => (digits, -9, Format::DecimalSi),
        "u" => (digits, -6, Format::DecimalSi),
        "m" => (digits, -3, Format::DecimalSi),
        "k" => (digits, 3, Format::DecimalSi),
        "M" => (digits, 6, Format::DecimalSi),
        "G" => (digits, 9, Format::DecimalSi),
        "T" => (digits, 12, Format::DecimalSi),
        "P" => (digits, 15, Format::DecimalSi),
        "E" => (digits, 18, Format::DecimalSi),
        binary @ ("Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei") => {
            let power = "KMGTPE".find(&binary[..1])? as u32 + 1;
            (
                digits.checked_mul(1024i128.checked_pow(power)?)?,
                0,
                Format::BinarySi,
            )
        }
        exponent => {
            let exponent: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            (digits, exponent, Format::DecimalExponent)
        }
    };
    // Now value = mantissa × 10^(exponent − fraction digits); in nanos:
    let shift = exponent
        .checked_sub(i32::try_from(fraction.len()).ok()?)?
        .checked_add(9)?;
    if shift >= 0 {
        mantissa = mantissa.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?;
    } else {
        let divisor = 10i128.checked_pow(shift.unsigned_abs());
        mantissa = match divisor {
            Some(divisor) => mantissa.div_euclid(divisor) + i128::from(mantissa % divisor != 0),
            // Finer than any i128: the smallest quantity, or none.
            None => i128::from(mantissa != 0),
        };
    }
    // Kubernetes holds quantities to the largest int64 of base units.
    Some((mantissa.min(i128::from(i64::MAX) * NANOS_PER_UNIT), format))
}

/// The canonical form Kubernetes writes `quantity` in (Go's
/// `Quantity.String()`): decimal quantities with the largest SI suffix (or
/// `e` exponent) that keeps the number whole, binary ones with the largest
/// power of 1024 that divides them (below 1024, or fractional, decimal).
/// `None` when `quantity` is not a quantity.
pub fn canonical(quantity: &str) -> Option<String> {
    let (nanos, format) = parse(quantity)?;
    if nanos == 0 {
        return Some("0".into());
    }
    if format == Format::BinarySi && nanos >= 1024 * NANOS_PER_UNIT && nanos % NANOS_PER_UNIT == 0 {
        let mut number = nanos / NANOS_PER_UNIT;
        let mut power = 0;
        while number % 1024 == 0 && power < 6 {
            number /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return Some(format!("{number}{suffix}"));
    }
    // The fewest digits, then down to an exponent that is a multiple of 3.
    let (mut number, mut exponent) = (nanos, -9i32);
    while number % 10 == 0 {
        number /= 10;
        exponent += 1;
    }
    let extra = exponent.rem_euclid(3);
    number *= 10i128.pow(extra.unsigned_abs());
    exponent -= extra;
    let suffix = match (format, exponent) {
        (_, 0) => String::new(),
        (Format::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    Some(format!("{number}{suffix}"))
}

/// `quantity` as a whole number of units, rounded up (Go's
/// `Quantity.Value()`: `500m` → 1, `2.1` → 3). `None` when it is not a
/// quantity.
pub fn value(quantity: &str) -> Option<i64> {
    let (nanos, _) = parse(quantity)?;
    let units = nanos.div_euclid(NANOS_PER_UNIT) + i128::from(nanos % NANOS_PER_UNIT != 0);
    i64::try_from(units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical_of(quantity: &str) -> String {
        canonical(quantity).unwrap_or_else(|| panic!("`{quantity}` is a quantity"))
    }

    #[test]
    fn canonical_quantities_stay_as_they_are() {
        for q in [
            "17G", "2G", "15G", "100m", "1", "8", "1536Mi", "1Gi", "512Ki", "100", "1e3",
        ] {
            assert_eq!(canonical_of(q), q);
        }
    }

    #[test]
    fn decimal_quantities_take_the_largest_suffix_that_keeps_them_whole() {
        assert_eq!(canonical_of("1000m"), "1");
        assert_eq!(canonical_of("1000"), "1k");
        assert_eq!(canonical_of("1.5G"), "1500M");
        assert_eq!(canonical_of("0.5"), "500m");
        assert_eq!(canonical_of("2048m"), "2048m");
        assert_eq!(canonical_of("1000M"), "1G");
        assert_eq!(canonical_of("0"), "0");
        assert_eq!(canonical_of("0Gi"), "0");
        // Finer than a nano: rounded up.
        assert_eq!(canonical_of("0.0000000001"), "1n");
        // Beyond the largest int64: held there.
        assert_eq!(canonical_of("1000E"), i64::MAX.to_string());
    }

    #[test]
    fn binary_quantities_take_the_largest_power_of_1024_that_divides_them() {
        assert_eq!(canonical_of("1024Mi"), "1Gi");
        assert_eq!(canonical_of("1.5Gi"), "1536Mi");
        assert_eq!(canonical_of("2048Ki"), "2Mi");
        // Below 1024, or fractional: decimal.
        assert_eq!(canonical_of("0.5Ki"), "512");
        assert_eq!(canonical_of("0.5Mi"), "512Ki");
        assert_eq!(canonical_of("1.0001Ki"), "1024102400u");
    }

    #[test]
    fn exponent_quantities_keep_an_exponent() {
        assert_eq!(canonical_of("12e2"), "1200");
        assert_eq!(canonical_of("1E6"), "1e6");
        assert_eq!(canonical_of("5e-1"), "500e-3");
    }

    #[test]
    fn values_round_up_to_whole_units() {
        assert_eq!(value("500m"), Some(1));
        assert_eq!(value("8"), Some(8));
        assert_eq!(value("2.1"), Some(3));
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("0"), Some(0));
    }

    #[test]
    fn what_is_not_a_quantity_is_none() {
        for q in [
            "",
            "lots",
            "1.2.3",
            "-1",
            "1Xi",
            ".",
            "1e",
            "99999999999999999999E",
            // An exponent at the edge of i32: no wrap-around to a small value.
            "1e2147483647",
        ] {
            assert_eq!(canonical(q), None, "{q}");
        }
    }
}
