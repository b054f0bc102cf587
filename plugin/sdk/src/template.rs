//! `{{ .name }}` placeholders, as Flyte's Go templates use them in container
//! arguments and log links.

/// Replace each `{{ ... }}` placeholder whose inner text (trimmed) `value`
/// knows; leave the others as they are.
pub fn replace_placeholders(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let placeholder = &rest[start..start + len + 2];
        out.push_str(&rest[..start]);
        match value(placeholder[2..placeholder.len() - 2].trim()) {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(placeholder),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::replace_placeholders;

    #[test]
    fn known_placeholders_are_replaced_and_others_kept() {
        let out = replace_placeholders("a {{ .x }} b {{.y}} c {{ open", |name| {
            (name == ".x").then(|| "X".into())
        });
        assert_eq!(out, "a X b {{.y}} c {{ open");
    }
}
