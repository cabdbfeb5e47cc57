//! The CLI's option handling: `--from` values and the rewriting of URLs with `--group`/`--from`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (url, rest) = s.split_once('\n').unwrap_or((s, ""));
    let from = rest.parse::<unireader::cli::From>().ok();
    let group = rest.split('\n').nth(1);
    let _ = unireader::cli::url_for_cli(url, group, from.as_ref());
});
