//! Showing server times (unix seconds) in the browser's locale and time zone, with the
//! platform's `Intl.DateTimeFormat`. The formatters are built once per page: building one
//! costs far more than formatting a date with it.

use js_sys::Intl::{
    DateTimeFormat, DateTimeFormatOptions, DayFormat, MonthFormat, NumericFormat,
    RelativeTimeFormat, RelativeTimeFormatNumeric, RelativeTimeFormatOptions, WeekdayFormat,
    YearFormat,
};
use js_sys::{Array, Date, Function};
use wasm_bindgen::JsValue;

/// The ways times and days are shown, as bound `format` functions of their formatters.
struct Formats {
    /// Hours and minutes: "14:05", or "2:05 PM" where the locale says so.
    clock: Function,
    /// The day, month and clock: "3 Mar, 14:05", "Mar 3, 2:05 PM".
    day_and_clock: Function,
    /// A day of this year: "Tuesday, 3 March", "Tuesday, March 3".
    day: Function,
    /// A day of another year: "Tuesday, 3 March 2025".
    day_of_year: Function,
    /// "today", "yesterday" in the browser's language (`numeric: "auto"`).
    relative: RelativeTimeFormat,
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
        let day = DateTimeFormatOptions::new();
        day.set_weekday(WeekdayFormat::Long);
        day.set_day(DayFormat::Numeric);
        day.set_month(MonthFormat::Long);
        let day_of_year = DateTimeFormatOptions::new();
        day_of_year.set_weekday(WeekdayFormat::Long);
        day_of_year.set_day(DayFormat::Numeric);
        day_of_year.set_month(MonthFormat::Long);
        day_of_year.set_year(YearFormat::Numeric);
        let relative = RelativeTimeFormatOptions::new();
        relative.set_numeric(RelativeTimeFormatNumeric::Auto);
        // No locales: the browser's own.
        let format =
            |options: &DateTimeFormatOptions| DateTimeFormat::new(&Array::new(), options).format();
        Self {
            clock: format(&clock),
            day_and_clock: format(&day_and_clock),
            day: format(&day),
            day_of_year: format(&day_of_year),
            relative: RelativeTimeFormat::new(&Array::new(), &relative),
        }
    }
}

thread_local! {
    static FORMATS: Formats = Formats::new();
}

fn date_of(unix_seconds: i64) -> Date {
    Date::new(&JsValue::from_f64(unix_seconds as f64 * 1000.0))
}

fn call(format: &Function, date: &Date) -> String {
    format
        .call1(&JsValue::UNDEFINED, date)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_default()
}

/// The clock time for today's messages, the day and clock time for older ones, in the
/// browser's locale and time zone.
pub fn short_time(unix_seconds: i64) -> String {
    let date = date_of(unix_seconds);
    let same_day = day_number(&date) == day_number(&Date::new_0());
    FORMATS.with(|formats| {
        call(
            if same_day {
                &formats.clock
            } else {
                &formats.day_and_clock
            },
            &date,
        )
    })
}

/// The calendar day of `date` in the browser's time zone, as a number that grows by one a
/// day (for telling days apart and counting between them; daylight saving time does not
/// shift it, as it uses the local date's fields).
fn day_number(date: &Date) -> i64 {
    let utc_midnight = Date::utc(f64::from(date.get_full_year()), f64::from(date.get_month()))
        + (f64::from(date.get_date()) - 1.0) * 86_400_000.0;
    (utc_midnight / 86_400_000.0).round() as i64
}

/// The local calendar day a message was sent on, for grouping messages by day.
pub fn day_of(unix_seconds: i64) -> i64 {
    day_number(&date_of(unix_seconds))
}

/// The local calendar day it is now, as `day_of` counts.
pub fn today() -> i64 {
    day_number(&Date::new_0())
}

/// What a day separator says: "Today", "Yesterday" (in the browser's language), else the
/// weekday and date, with the year when it is not this one.
pub fn day_label(unix_seconds: i64) -> String {
    let date = date_of(unix_seconds);
    let today = Date::new_0();
    let days_ago = day_number(&today) - day_number(&date);
    FORMATS.with(|formats| {
        let label = match days_ago {
            0 | 1 => String::from(formats.relative.format(-(days_ago as f64), "day")),
            _ if date.get_full_year() == today.get_full_year() => call(&formats.day, &date),
            _ => call(&formats.day_of_year, &date),
        };
        crate::capitalised(&label)
    })
}
