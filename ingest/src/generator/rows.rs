//! Row values for the simulated shop: new rows and plausible updates of existing ones.
//! Pure: values come only from the caller's seeded RNG and simulated time.
//!
//! The vocabularies deliberately include non-ASCII names, apostrophes, a double quote and a
//! backslash so that JSON escaping and UTF-8 handling downstream are exercised.

use super::model::{Cell, Flavor, ORDER_STATUSES, Row, pos};
use super::rng::SplitMix64;

const FIRST_NAMES: [&str; 16] = [
    "Ada", "Grace", "Linus", "Zoë", "Jürgen", "Łukasz", "Ngọc", "Siobhán", "Kwame", "Mei", "Ana",
    "Olu", "Priya", "Chen", "Søren", "Amélie",
];
const LAST_NAMES: [&str; 14] = [
    "Lovelace",
    "Hopper",
    "O'Brien",
    "Müller",
    "Nowak",
    "Nguyen",
    "Mensah",
    "Kumar",
    "García",
    "Sørensen",
    "Dubois",
    "Li",
    "Smith",
    "Okafor",
];
const EMAIL_DOMAINS: [&str; 4] = ["example.com", "example.org", "mail.test", "shop.invalid"];
const COUNTRIES: [&str; 12] = [
    "US", "DE", "FR", "PL", "VN", "GH", "IN", "CN", "DK", "IE", "BR", "JP",
];
const ADJECTIVES: [&str; 8] = [
    "Classic", "Compact", "Deluxe", "Eco", "Ultra", "Vintage", "Smart", "Café",
];
const NOUNS: [&str; 8] = [
    "Kettle",
    "Skillet 12\"",
    "Backpack",
    "Lamp",
    "Headphones",
    "Notebook",
    "Mug ☕",
    "Path\\Finder",
];

/// Days since the epoch of 1950-01-01 and 2006-12-31: the birth-date range.
const BIRTH_DATE_RANGE: (i64, i64) = (-7_305, 13_513);
/// Prices are `DECIMAL(10,2)`: 0.99 to 999.99.
const PRICE_RANGE: (i64, i64) = (99, 99_999);
/// Largest value a `DECIMAL(12,2)` total can hold.
const MAX_TOTAL: i64 = 999_999_999_999;
pub(crate) const MAX_LINES_PER_ORDER: i32 = 4;

fn email(rng: &mut SplitMix64, id: i64) -> Box<str> {
    let tag = rng.below(1000);
    format!("user{id}.{tag}@{}", rng.pick(&EMAIL_DOMAINS)).into()
}

fn full_name(rng: &mut SplitMix64) -> Box<str> {
    format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES)).into()
}

fn country(rng: &mut SplitMix64) -> Cell {
    // One customer in ten has no country on file: a nullable column needs real nulls.
    if rng.chance(0.1) {
        Cell::Null
    } else {
        Cell::Label(rng.pick(&COUNTRIES))
    }
}

pub(crate) fn customer(rng: &mut SplitMix64, flavor: Flavor, id: i64, created_us: i64) -> Row {
    let created = flavor.truncate_micros(created_us);
    let birth_date = if rng.chance(0.08) {
        Cell::Null
    } else {
        Cell::Date(rng.between(BIRTH_DATE_RANGE.0, BIRTH_DATE_RANGE.1) as i32)
    };
    vec![
        Cell::Int(id),
        Cell::Text(email(rng, id)),
        Cell::Text(full_name(rng)),
        country(rng),
        birth_date,
        Cell::Micros(created),
        Cell::Micros(created),
    ]
    .into_boxed_slice()
}

pub(crate) fn updated_customer(
    rng: &mut SplitMix64,
    flavor: Flavor,
    old: &[Cell],
    now_us: i64,
) -> Row {
    let mut row: Vec<Cell> = old.to_vec();
    let id = match row[0] {
        Cell::Int(id) => id,
        _ => 0,
    };
    match rng.below(10) {
        0..=3 => row[pos::CUSTOMER_EMAIL] = Cell::Text(email(rng, id)),
        4..=6 => row[pos::CUSTOMER_COUNTRY] = country(rng),
        _ => row[pos::CUSTOMER_NAME] = Cell::Text(full_name(rng)),
    }
    row[pos::CUSTOMER_UPDATED_AT] = Cell::Micros(flavor.truncate_micros(now_us));
    row.into_boxed_slice()
}

pub(crate) fn product(rng: &mut SplitMix64, flavor: Flavor, id: i64, updated_us: i64) -> Row {
    vec![
        Cell::Int(id),
        Cell::Text(format!("SKU-{id:06}").into()),
        Cell::Text(format!("{} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS)).into()),
        Cell::Decimal(rng.between(PRICE_RANGE.0, PRICE_RANGE.1)),
        Cell::Bool(!rng.chance(0.1)),
        Cell::Micros(flavor.truncate_micros(updated_us)),
    ]
    .into_boxed_slice()
}

pub(crate) fn updated_product(
    rng: &mut SplitMix64,
    flavor: Flavor,
    old: &[Cell],
    now_us: i64,
) -> Row {
    let mut row: Vec<Cell> = old.to_vec();
    match rng.below(10) {
        0..=5 => {
            let price = match row[pos::PRODUCT_PRICE] {
                Cell::Decimal(p) => p,
                _ => PRICE_RANGE.0,
            };
            // A change of up to ±20%, always a real change, kept inside DECIMAL(10,2).
            let delta = rng.between(1, (price / 5).max(1));
            let next = if rng.chance(0.5) {
                price + delta
            } else {
                price - delta
            };
            row[pos::PRODUCT_PRICE] = Cell::Decimal(next.clamp(1, PRICE_RANGE.1));
        }
        6..=8 => {
            let active = matches!(row[pos::PRODUCT_ACTIVE], Cell::Bool(true));
            row[pos::PRODUCT_ACTIVE] = Cell::Bool(!active);
        }
        _ => {
            let name = format!("{} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS));
            row[2] = Cell::Text(name.into());
        }
    }
    row[pos::PRODUCT_UPDATED_AT] = Cell::Micros(flavor.truncate_micros(now_us));
    row.into_boxed_slice()
}

/// The price a product sells at, for order lines: its current price when it exists.
pub(crate) fn product_price(row: Option<&Row>, rng: &mut SplitMix64) -> i64 {
    match row.map(|r| &r[pos::PRODUCT_PRICE]) {
        Some(Cell::Decimal(price)) => *price,
        _ => rng.between(PRICE_RANGE.0, PRICE_RANGE.1),
    }
}

/// An order line. One line in twenty is a discount line with a negative unit price, so
/// negative decimals appear in real data, not only in unit tests.
pub(crate) fn order_item(
    rng: &mut SplitMix64,
    order_id: i64,
    line_no: i32,
    product_id: i64,
    list_price: i64,
) -> Row {
    let (quantity, unit_price) = if rng.chance(0.05) {
        (1, -rng.between(100, 2_000))
    } else {
        (rng.between(1, 5), list_price)
    };
    vec![
        Cell::Int(order_id),
        Cell::Int(i64::from(line_no)),
        Cell::Int(product_id),
        Cell::Int(quantity),
        Cell::Decimal(unit_price),
    ]
    .into_boxed_slice()
}

pub(crate) fn updated_order_item(rng: &mut SplitMix64, old: &[Cell]) -> Row {
    let mut row: Vec<Cell> = old.to_vec();
    let quantity = match row[pos::ITEM_QUANTITY] {
        Cell::Int(q) => q,
        _ => 1,
    };
    // 1..=9 excluding the current quantity: an update always changes something.
    let mut next = rng.between(1, 8);
    if next >= quantity {
        next += 1;
    }
    row[pos::ITEM_QUANTITY] = Cell::Int(next);
    row.into_boxed_slice()
}

/// Sum of quantity * unit price over order lines, clamped to what `DECIMAL(12,2)` holds.
pub(crate) fn order_total<'a>(items: impl IntoIterator<Item = &'a Row>) -> i64 {
    let total: i64 = items
        .into_iter()
        .map(
            |item| match (&item[pos::ITEM_QUANTITY], &item[pos::ITEM_UNIT_PRICE]) {
                (Cell::Int(q), Cell::Decimal(p)) => q.saturating_mul(*p),
                _ => 0,
            },
        )
        .fold(0, i64::saturating_add);
    total.clamp(-MAX_TOTAL, MAX_TOTAL)
}

pub(crate) fn order(
    flavor: Flavor,
    id: i64,
    customer_id: i64,
    status: &'static str,
    total: i64,
    ordered_us: i64,
) -> Row {
    vec![
        Cell::Int(id),
        Cell::Int(customer_id),
        Cell::Label(status),
        Cell::Decimal(total),
        Cell::Micros(flavor.truncate_micros(ordered_us)),
    ]
    .into_boxed_slice()
}

/// A status picked for a pre-existing (snapshot) order.
pub(crate) fn historic_status(rng: &mut SplitMix64) -> &'static str {
    rng.pick(&ORDER_STATUSES)
}

/// The order lifecycle: pending -> paid | cancelled, paid -> shipped | cancelled; orders
/// already shipped or cancelled get a total adjustment (refund or fee) instead.
pub(crate) fn updated_order(rng: &mut SplitMix64, old: &[Cell]) -> Row {
    let mut row: Vec<Cell> = old.to_vec();
    let status = match row[pos::ORDER_STATUS] {
        Cell::Label(s) => s,
        _ => "pending",
    };
    let next = match status {
        "pending" if rng.chance(0.75) => Some("paid"),
        "pending" => Some("cancelled"),
        "paid" if rng.chance(0.85) => Some("shipped"),
        "paid" => Some("cancelled"),
        _ => None,
    };
    match next {
        Some(next) => row[pos::ORDER_STATUS] = Cell::Label(next),
        None => {
            let total = match row[pos::ORDER_TOTAL] {
                Cell::Decimal(t) => t,
                _ => 0,
            };
            let delta = rng.between(1, (total.abs() / 10).max(1));
            row[pos::ORDER_TOTAL] = Cell::Decimal((total - delta).clamp(-MAX_TOTAL, MAX_TOTAL));
        }
    }
    row.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_always_change_the_row() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..500 {
            let c = customer(&mut rng, Flavor::MySql, 1, 1_000_123_456);
            assert_ne!(
                updated_customer(&mut rng, Flavor::MySql, &c, 2_000_000_000),
                c
            );
            let p = product(&mut rng, Flavor::Postgres, 1, 5);
            assert_ne!(updated_product(&mut rng, Flavor::Postgres, &p, 6), p);
            let i = order_item(&mut rng, 1, 1, 1, 500);
            assert_ne!(updated_order_item(&mut rng, &i), i);
            let o = order(Flavor::MySql, 1, 1, historic_status(&mut rng), 100, 7_000);
            assert_ne!(updated_order(&mut rng, &o), o);
        }
    }

    #[test]
    fn mysql_rows_hold_millisecond_timestamps() {
        let mut rng = SplitMix64::new(2);
        let c = customer(&mut rng, Flavor::MySql, 1, 1_000_123_456);
        assert_eq!(c[5], Cell::Micros(1_000_123_000));
    }

    #[test]
    fn totals_multiply_quantity_by_price() {
        let items = [
            vec![
                Cell::Int(1),
                Cell::Int(1),
                Cell::Int(1),
                Cell::Int(3),
                Cell::Decimal(250),
            ]
            .into_boxed_slice(),
            vec![
                Cell::Int(1),
                Cell::Int(2),
                Cell::Int(1),
                Cell::Int(1),
                Cell::Decimal(-100),
            ]
            .into_boxed_slice(),
        ];
        assert_eq!(order_total(items.iter()), 650);
    }
}
