//! Showing server times (unix seconds) in the user's time zone.

/// "14:05" for today, "3 Mar 14:05" for other days, in local time.
pub fn short_time(unix_seconds: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        unix_seconds as f64 * 1000.0,
    ));
    let today = js_sys::Date::new_0();
    let clock = format!("{:02}:{:02}", date.get_hours(), date.get_minutes());
    let same_day = date.get_full_year() == today.get_full_year()
        && date.get_month() == today.get_month()
        && date.get_date() == today.get_date();
    if same_day {
        clock
    } else {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.get(date.get_month() as usize).copied().unwrap_or("");
        format!("{} {month} {clock}", date.get_date())
    }
}
