//! Bounds on what a plugin answers, far below the 4 MiB gRPC message limit
//! propeller reads with, so any phase a plugin reports can be delivered.
//! Free text (reasons, messages) is cut with a marker; a structure that is
//! out of bounds (too many links, a huge URI or custom info) is refused.

use super::wit;

pub const MAX_REASON_BYTES: usize = 4 << 10;
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;
const MAX_CODE_BYTES: usize = 256;
const MAX_LOG_LINKS: usize = 32;
const MAX_LINK_NAME_BYTES: usize = 256;
const MAX_URI_BYTES: usize = 4 << 10;
pub const MAX_CUSTOM_INFO_BYTES: usize = 256 << 10;

/// `text` cut to at most `max` bytes (at a character boundary), saying so.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let marker = format!(" [... {} bytes cut]", text.len() - max);
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&marker);
}

pub(super) fn bound_phase_info(info: &mut wit::PhaseInfo) -> Result<(), String> {
    truncate(&mut info.reason, MAX_REASON_BYTES);
    if let Some(error) = &mut info.error {
        truncate(&mut error.code, MAX_CODE_BYTES);
        truncate(&mut error.message, MAX_MESSAGE_BYTES);
    }
    if info.logs.len() > MAX_LOG_LINKS {
        return Err(format!(
            "{} log links; at most {MAX_LOG_LINKS} are allowed",
            info.logs.len()
        ));
    }
    for link in &mut info.logs {
        truncate(&mut link.name, MAX_LINK_NAME_BYTES);
        if link.uri.len() > MAX_URI_BYTES {
            return Err(format!(
                "log link `{}` has a {}-byte URI; at most {MAX_URI_BYTES} bytes are allowed",
                link.name,
                link.uri.len()
            ));
        }
    }
    if let Some(custom) = &info.custom_info
        && custom.len() > MAX_CUSTOM_INFO_BYTES
    {
        return Err(format!(
            "custom info is {} bytes; at most {MAX_CUSTOM_INFO_BYTES} are allowed",
            custom.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_a_marker_within_the_bound() {
        let mut text = "é".repeat(10_000);
        truncate(&mut text, 1000);
        assert!(text.len() <= 1000, "{}", text.len());
        assert!(text.ends_with("bytes cut]"), "{text}");
        let mut short = "fine".to_owned();
        truncate(&mut short, 1000);
        assert_eq!(short, "fine");
    }
}
