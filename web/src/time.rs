//! Showing server times (unix seconds) in the browser's locale and time zone, with the
//! platform's `Intl.DateTimeFormat`. The formatters are built once per page: building one
//! costs far more than formatting a date with it.

use js_sys::Intl::{DateTimeFormat, DateTimeFormatOptions, DayFormat, MonthFormat, NumericFormat};
use js_sys::{Array, Date, Function};
use wasm_bindgen::JsValue;

/// The two ways a message's time is shown, as bound `format` functions of their formatters.
struct Formats {
    /// Hours and minutes: "14:05", or "2:05 PM" where the locale says so.
    clock: Function,
    /// The day, month and clock: "3 Mar, 14:05", "Mar 3, 2:05 PM".
    day_and_clock: Function,
}

impl Formats {
    fn new() -> Self {
        let clock = DateTimeFormatOptions::new();
        clock.set_hour(NumericFormat::Numeric);
        clock.set_minute(NumericFormat::TwoDigit);
        let day_and_clock = DateTimeFormatOptions::new();
        day_and_clock.set_day(DayFormat::Numeric);
        day_and_clock.set_month(MonthFormat::Short);
        day_and_clock.set_hour(NumericFormat::Numeric);
        day_and_clock.set_minute(NumericFormat::TwoDigit);
        // No locales: the browser's own.
        let format =
            |options: &DateTimeFormatOptions| DateTimeFormat::new(&Array::new(), options).format();
        Self {
            clock: format(&clock),
            day_and_clock: format(&day_and_clock),
        }
    }
}

thread_local! {
    static FORMATS: Formats = Formats::new();
}

/// The clock time for today's messages, the day and clock time for older ones, in the
/// browser's locale and time zone.
pub fn short_time(unix_seconds: i64) -> String {
    let date = Date::new(&JsValue::from_f64(unix_seconds as f64 * 1000.0));
    let today = Date::new_0();
    let same_day = date.get_full_year() == today.get_full_year()
        && date.get_month() == today.get_month()
        && date.get_date() == today.get_date();
    FORMATS.with(|formats| {
        let format = if same_day {
            &formats.clock
        } else {
            &formats.day_and_clock
        };
        format
            .call1(&JsValue::UNDEFINED, &date)
            .ok()
            .and_then(|text| text.as_string())
            .unwrap_or_default()
    })
}
