//! What identity text may contain: email addresses and display text (people's names,
//! organization names), as pure rules.
//!
//! Emails are compared after ASCII lower-casing only: full Unicode case folding maps characters
//! such as the Kelvin sign (U+212A) onto ASCII letters, so two different addresses would match.
//! Display text refuses control characters and Unicode format characters (general category Cf:
//! bidi embeddings, overrides and isolates, zero-width characters, the byte-order mark, ...),
//! which change how the text around them is shown, and is capped in length.

/// Longest display text (a person's name), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email address, in bytes (RFC 5321's 256-byte path less its angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part of an address, in bytes (RFC 5321).
const MAX_LOCAL_PART_BYTES: usize = 64;
/// Longest domain label, in bytes (RFC 1035).
const MAX_LABEL_BYTES: usize = 63;

/// The characters of Unicode general category Cf (format), as inclusive ranges in code-point
/// order (Unicode 16.0). No crate in the dependency tree exposes the general category, so the
/// table is spelled out; its tests check it against properties the standard library knows.
const FORMAT_CHARACTERS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // Arabic letter mark
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x180E, 0x180E),   // Mongolian vowel separator
    (0x200B, 0x200F),   // zero-width space, non-joiner, joiner; LRM, RLM
    (0x202A, 0x202E),   // bidi embeddings and overrides
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206F),   // bidi isolates, deprecated format characters
    (0xFEFF, 0xFEFF),   // zero-width no-break space (byte-order mark)
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol beam and tie controls
    (0xE0001, 0xE0001), // language tag
    (0xE0020, 0xE007F), // tag characters
];

/// Whether `c` is a Unicode format character (general category Cf).
pub fn is_format_character(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARACTERS
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Characters that are not format characters but render as nothing (default-ignorable code points
/// of other categories) or as an empty cell, and are used to make a name look blank or like
/// another: the combining grapheme joiner, the Hangul fillers, the Khmer inherent vowels, the
/// Mongolian free variation selectors and the blank Braille pattern. Variation selectors
/// (U+FE00-U+FE0F) stay allowed: an emoji's presentation depends on them.
const INVISIBLE_CHARACTERS: &[(u32, u32)] = &[
    (0x034F, 0x034F), // combining grapheme joiner
    (0x115F, 0x1160), // Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5), // Khmer inherent vowels
    (0x180B, 0x180D), // Mongolian free variation selectors one to three
    (0x180F, 0x180F), // Mongolian free variation selector four
    (0x2800, 0x2800), // Braille pattern blank
    (0x3164, 0x3164), // Hangul filler
    (0xFFA0, 0xFFA0), // halfwidth Hangul filler
];

/// Whether `c` renders as nothing or as blank without being whitespace or a format character.
pub fn is_invisible_character(c: char) -> bool {
    let c = u32::from(c);
    INVISIBLE_CHARACTERS
        .iter()
        .any(|&(start, end)| (start..=end).contains(&c))
}

/// Characters no identity text may contain: control (Cc) and format (Cf) characters, and the
/// other invisible ones ([`is_invisible_character`]).
pub fn is_hidden_character(c: char) -> bool {
    c.is_control() || is_format_character(c) || is_invisible_character(c)
}

/// Why display text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the text is empty")]
    Empty,
    #[error("the text is longer than {0} characters")]
    TooLong(usize),
    #[error("the text contains a control or invisible formatting character")]
    HiddenCharacter,
}

/// Display text as stored: trimmed, inner whitespace runs collapsed to one space; refused when
/// empty, longer than `max_chars` characters, or holding a control or format character.
pub fn display_text(raw: &str, max_chars: usize) -> Result<String, TextError> {
    // Bounded before any copy: a longer input cannot become short enough (runs of whitespace
    // collapse, but never below one byte per character kept).
    if raw.len() > max_chars.saturating_mul(4).saturating_add(1024) {
        return Err(TextError::TooLong(max_chars));
    }
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if text.chars().any(is_hidden_character) {
        return Err(TextError::HiddenCharacter);
    }
    if text.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    Ok(text)
}

/// A person's name from a token claim, or `None` when it is not acceptable display text.
pub fn person_name(raw: &str) -> Option<String> {
    display_text(raw, MAX_NAME_CHARS).ok()
}

/// Characters that delimit addresses in mail headers; none belongs in a plain address.
fn is_address_delimiter(c: char) -> bool {
    matches!(
        c,
        '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '\\' | '"'
    )
}

/// Whether `email` (already trimmed) is a plausible address: one `@`; a local part of 1 to 64
/// bytes; a domain of at least two dot-separated labels of 1 to 63 bytes made of letters, digits
/// and inner hyphens; at most 254 bytes; no whitespace, control, format or delimiter character.
pub fn is_plausible_email(email: &str) -> bool {
    if email.len() > MAX_EMAIL_BYTES {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > MAX_LOCAL_PART_BYTES
        || local.chars().any(|c| {
            c == '@' || c.is_whitespace() || is_hidden_character(c) || is_address_delimiter(c)
        })
    {
        return false;
    }
    let mut labels = 0;
    for label in domain.split('.') {
        labels += 1;
        if label.is_empty()
            || label.len() > MAX_LABEL_BYTES
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .chars()
                .all(|c| c == '-' || (c.is_alphanumeric() && !is_hidden_character(c)))
        {
            return false;
        }
    }
    labels >= 2
}

/// An email address as stored and matched: trimmed and ASCII lower-cased (nothing else is
/// folded), or `None` when it is not a plausible address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim();
    is_plausible_email(email).then(|| email.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_format_table_is_sorted_disjoint_and_holds_the_named_characters() {
        for pair in FORMAT_CHARACTERS.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:x?}");
        }
        for c in [
            '\u{AD}',
            '\u{61C}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2060}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{E0001}',
            '\u{E0041}',
        ] {
            assert!(is_format_character(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a',
            'K',
            '\u{212A}',
            ' ',
            '\u{2065}',
            '\u{2028}',
            'я',
            '語',
            '\u{1F600}',
        ] {
            assert!(!is_format_character(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn display_text_is_collapsed_bounded_and_visible() {
        assert_eq!(display_text("  Ann \t Lee ", 200), Ok("Ann Lee".to_owned()));
        assert_eq!(display_text("Zoë Ōta", 200), Ok("Zoë Ōta".to_owned()));
        assert_eq!(display_text(" \n ", 200), Err(TextError::Empty));
        assert_eq!(display_text(&"я".repeat(200), 200), Ok("я".repeat(200)));
        assert_eq!(
            display_text(&"я".repeat(201), 200),
            Err(TextError::TooLong(200))
        );
        assert_eq!(
            display_text(&"x".repeat(12 * 1024), 200),
            Err(TextError::TooLong(200))
        );
        for bad in [
            "Ann\u{202E}eeL",
            "Ann\u{200B}Lee",
            "\u{2066}Ann\u{2069}",
            "\u{FEFF}Ann",
            "Ann\u{0}",
            "Ann\u{7}Lee",
            "Ann\u{200D}",
        ] {
            assert_eq!(
                display_text(bad, 200),
                Err(TextError::HiddenCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(person_name("  Bo  Kim "), Some("Bo Kim".to_owned()));
        assert_eq!(person_name("Bo\u{202D}Kim"), None);
    }

    #[test]
    fn emails_fold_ascii_only() {
        assert_eq!(
            normalize_email("  Bob@Example.COM "),
            Some("bob@example.com".to_owned())
        );
        // The Kelvin sign is not the letter k: the address stays distinct from kim@example.com.
        let kelvin = normalize_email("\u{212A}im@example.com");
        assert_eq!(kelvin.as_deref(), Some("\u{212A}im@example.com"));
        assert_ne!(kelvin, normalize_email("kim@example.com"));
        assert_eq!(
            normalize_email("Zoë@Bücher.example"),
            Some("zoë@bücher.example".to_owned())
        );
    }

    #[test]
    fn implausible_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!(
            "{}@{}.com",
            "a".repeat(60),
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(63)
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@example",
            "bob@@example.com",
            "bob@exa@mple.com",
            "b ob@example.com",
            "bob@.com",
            "bob@example.",
            "bob@example..com",
            "bob@-example.com",
            "bob@exa mple.com",
            "bob@exa_mple.com",
            "Ann <ann@example.com>",
            "ann@example.com>",
            "a,b@example.com",
            "not an address",
            "ann\u{202E}@example.com",
            "ann\u{200B}@example.com",
            "ann@exa\u{200B}mple.com",
            "ann\u{0}@example.com",
            "ann@example.com\u{FEFF}x",
            long_local.as_str(),
            long.as_str(),
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        assert!(long.len() > MAX_EMAIL_BYTES);
        let longest = format!("{}@{}.com", "a".repeat(64), "b".repeat(63));
        assert!(normalize_email(&longest).is_some());
    }

    fn visible_text() -> impl Strategy<Value = String> {
        // Letters, digits and spaces; the letters include the Hangul fillers, which are
        // invisible (refused by design), so they are taken out.
        "[\\p{L}\\p{N} ]{1,60}"
            .prop_map(|text| {
                text.chars()
                    .filter(|c| !is_hidden_character(*c))
                    .collect::<String>()
            })
            .prop_filter("not blank", |s| !s.trim().is_empty())
    }

    fn format_character() -> impl Strategy<Value = char> {
        proptest::sample::select(FORMAT_CHARACTERS.to_vec()).prop_flat_map(|(start, end)| {
            (start..=end).prop_map(|c| char::from_u32(c).expect("a scalar value"))
        })
    }

    proptest! {
        /// No letter, digit or whitespace is a format character: the table cannot refuse a
        /// name for its letters.
        #[test]
        fn letters_digits_and_spaces_are_never_format_characters(c in any::<char>()) {
            if c.is_alphanumeric() || c.is_whitespace() {
                prop_assert!(!is_format_character(c));
            }
        }

        #[test]
        fn a_format_character_anywhere_is_refused(
            text in visible_text(), hidden in format_character(), at in any::<prop::sample::Index>()
        ) {
            let mut chars: Vec<char> = text.chars().collect();
            chars.insert(at.index(chars.len() + 1), hidden);
            let with_hidden: String = chars.into_iter().collect();
            prop_assert_eq!(display_text(&with_hidden, 1000), Err(TextError::HiddenCharacter));
            let email = format!("{}@example.com", with_hidden.replace(' ', ""));
            prop_assert_eq!(normalize_email(&email), None);
        }

        #[test]
        fn visible_text_within_the_cap_is_kept_collapsed(text in visible_text()) {
            let kept = display_text(&text, 200).expect("visible text is kept");
            prop_assert_eq!(kept, text.split_whitespace().collect::<Vec<_>>().join(" "));
        }

        /// Only ASCII letters change case: the result differs from the input exactly where an
        /// ASCII upper-case letter was.
        #[test]
        fn email_folding_is_ascii_only(local in "[A-Za-z0-9._+\u{212A}\u{130}\u{C0}-\u{FF}-]{1,20}") {
            let email = format!("{local}@Example.com");
            if let Some(folded) = normalize_email(&email) {
                prop_assert_eq!(folded.chars().count(), email.chars().count());
                for (a, b) in email.chars().zip(folded.chars()) {
                    prop_assert_eq!(b, a.to_ascii_lowercase());
                }
            }
        }
    }
}
