//! ISO 4217 minor units: how many decimal places a currency's amounts have, so that an amount
//! in minor units becomes the right decimal amount (500 minor units of JPY are ¥500, of KWD
//! 0.500 dinar, of USD $5.00).

/// Currencies whose minor unit is not a hundredth, by ISO 4217's exponent (the table of
/// ISO 4217 as published by its maintenance agency; funds codes included). Every other code,
/// and a code ISO 4217 does not know, has two decimal places.
const EXPONENTS: &[(&str, u32)] = &[
    // No minor unit.
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
    // Thousandths.
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    // Ten-thousandths (units of account).
    ("CLF", 4),
    ("UYW", 4),
];

/// The number of decimal places of `currency`'s amounts (ISO 4217's minor-unit exponent):
/// 0 for JPY, 3 for KWD, 2 for USD and any code not listed. Case does not matter.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    EXPONENTS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(currency.trim()))
        .map_or(2, |(_, exponent)| *exponent)
}

/// An amount in minor units of `currency` as a number of major units (for tables and SQL,
/// where amounts are floats): 123456 KWD minor units are 123.456.
pub fn major_units(minor_units: f64, currency: &str) -> f64 {
    let exponent = minor_unit_exponent(currency);
    minor_units / 10f64.powi(exponent as i32)
}

/// An amount in minor units of `currency` as an exact decimal string, with as many decimal
/// places as the currency has: `"-1234.567"` for -1234567 KWD, `"5000"` for 5000 JPY.
pub fn decimal_amount(minor_units: i64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    let sign = if minor_units < 0 { "-" } else { "" };
    let magnitude = minor_units.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{magnitude}");
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(minor_unit_exponent("JPY"), 0);
        assert_eq!(minor_unit_exponent("krw"), 0);
        assert_eq!(minor_unit_exponent("KWD"), 3);
        assert_eq!(minor_unit_exponent("BHD"), 3);
        assert_eq!(minor_unit_exponent("CLF"), 4);
        assert_eq!(minor_unit_exponent("USD"), 2);
        assert_eq!(minor_unit_exponent("EUR"), 2);
        assert_eq!(minor_unit_exponent("XYZ"), 2);
    }

    #[test]
    fn amounts_have_their_currency_s_decimal_places() {
        assert_eq!(decimal_amount(5_000, "JPY"), "5000");
        assert_eq!(decimal_amount(-5_000, "JPY"), "-5000");
        assert_eq!(decimal_amount(1_234_567, "KWD"), "1234.567");
        assert_eq!(decimal_amount(-5, "KWD"), "-0.005");
        assert_eq!(decimal_amount(123_456, "USD"), "1234.56");
        assert_eq!(decimal_amount(7, "USD"), "0.07");
        assert_eq!(decimal_amount(12_345, "CLF"), "1.2345");
        assert_eq!(decimal_amount(i64::MIN, "USD"), "-92233720368547758.08");
        assert_eq!(major_units(5_000.0, "JPY"), 5_000.0);
        assert_eq!(major_units(1_234_567.0, "KWD"), 1_234.567);
        assert_eq!(major_units(123_456.0, "USD"), 1_234.56);
    }
}
