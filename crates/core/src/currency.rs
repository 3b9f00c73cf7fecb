//! ISO 4217 minor units: how many decimals an amount in each currency has.
//!
//! [`Money`](crate::Money) stores amounts in the currency's minor unit: cents for USD, yen for
//! JPY (no decimals), fils for KWD (three). The edge form takes and gives decimal amounts; this
//! module turns one into the other.

/// Currencies whose minor unit is not a hundredth. Every other code has two decimals.
/// From the ISO 4217 list of current currencies.
const EXPONENTS: &[(&str, u32)] = &[
    // No decimals.
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    // Three decimals.
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    // Four decimals.
    ("CLF", 4),
    ("UYW", 4),
];

/// How many decimals an amount in `currency` (an ISO 4217 code) has: 0 for JPY, 3 for KWD,
/// 2 for USD, EUR and any code not listed as different. Case does not matter.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    EXPONENTS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(currency.trim()))
        .map_or(2, |(_, exponent)| *exponent)
}

/// An amount in minor units as a number of major units, for tables and SQL where amounts
/// are floats (`1234` KWD fils → `1.234`).
pub fn major_units(minor_units: f64, currency: &str) -> f64 {
    minor_units / 10f64.powi(minor_unit_exponent(currency) as i32)
}

/// An amount in minor units as exact decimal text (`123456` USD → `"1234.56"`, `5000` JPY →
/// `"5000"`).
pub fn decimal_amount(minor_units: i64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    if exponent == 0 {
        return minor_units.to_string();
    }
    let scale = 10u64.pow(exponent);
    let magnitude = minor_units.unsigned_abs();
    let sign = if minor_units < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = exponent as usize
    )
}

/// Decimal text (`"48000"`, `"48000.5"`) as minor units of `currency`. Decimals beyond the
/// currency's own are refused unless they are zeros (`"5000.00"` JPY is 5000 yen).
pub fn parse_decimal(text: &str, currency: &str) -> Result<i64, String> {
    let invalid = || format!("expected an amount such as 48000 or 48000.50, got {text:?}");
    let exponent = minor_unit_exponent(currency) as usize;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let (kept, beyond) = fraction.split_at(fraction.len().min(exponent));
    if beyond.bytes().any(|b| b != b'0') {
        return Err(match exponent {
            0 => format!("{currency} has no decimals, got {text:?}"),
            1 => format!("more than one decimal for {currency}: {text:?}"),
            n => format!("more than {n} decimals for {currency}: {text:?}"),
        });
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let mut minor: i64 = if kept.is_empty() {
        0
    } else {
        kept.parse().map_err(|_| invalid())?
    };
    for _ in kept.len()..exponent {
        minor *= 10;
    }
    10i64
        .checked_pow(exponent as u32)
        .and_then(|scale| whole.checked_mul(scale))
        .and_then(|units| units.checked_add(minor))
        .ok_or_else(|| format!("amount too large: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency() {
        assert_eq!(parse_decimal("48000.5", "USD"), Ok(4_800_050));
        assert_eq!(parse_decimal("48000.50", "EUR"), Ok(4_800_050));
        assert_eq!(parse_decimal("48000", "USD"), Ok(4_800_000));
        assert_eq!(parse_decimal("5000", "JPY"), Ok(5000));
        assert_eq!(parse_decimal("5000.00", "JPY"), Ok(5000));
        assert_eq!(parse_decimal("1.234", "KWD"), Ok(1234));
        assert_eq!(parse_decimal("1.2", "KWD"), Ok(1200));
        assert_eq!(parse_decimal("0.0001", "CLF"), Ok(1));
        assert!(
            parse_decimal("5000.5", "JPY")
                .expect_err("refused")
                .contains("JPY has no decimals")
        );
        assert!(
            parse_decimal("1.2345", "KWD")
                .expect_err("refused")
                .contains("3 decimals")
        );
        assert!(
            parse_decimal("1.234", "USD")
                .expect_err("refused")
                .contains("2 decimals")
        );
        assert!(parse_decimal("-1", "USD").is_err());
        assert!(parse_decimal(".5", "USD").is_err());
        assert!(parse_decimal("99999999999999999999", "USD").is_err());
    }

    #[test]
    fn text_round_trips() {
        for (minor, currency, text) in [
            (4_800_050, "USD", "48000.50"),
            (5, "USD", "0.05"),
            (5000, "JPY", "5000"),
            (1234, "KWD", "1.234"),
            (1, "CLF", "0.0001"),
        ] {
            assert_eq!(decimal_amount(minor, currency), text);
            assert_eq!(parse_decimal(text, currency), Ok(minor));
        }
        assert_eq!(decimal_amount(-5, "USD"), "-0.05");
        assert_eq!(major_units(1234.0, "KWD"), 1.234);
        assert_eq!(major_units(5000.0, "JPY"), 5000.0);
        assert_eq!(major_units(4_800_050.0, "USD"), 48000.5);
        assert_eq!(decimal_amount(i64::MIN, "USD"), "-92233720368547758.08");
        assert_eq!(minor_unit_exponent("jpy"), 0);
    }
}
