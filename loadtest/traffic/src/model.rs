//! The generator: what to generate ([`TrafficConfig`]), the model
//! ([`Traffic`]), which decides each record's class from `(seed, i)` and
//! builds it, and what the engine must do with it ([`Expect`]).

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{LifeEvent, MailboxId, Reason};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::agencies::{
    pick_variant, AgencySpec, JsonStyle, Variant, AGENCIES, AGENCY_COUNT, AGENCY_SHARES,
    MUNICIPALITY,
};
use crate::cp1256::to_windows_1256;
use crate::dates::{civil_from_days, push_rfc3339, TEHRAN_OFFSET_SECS};
use crate::digits::{hex_into, push_ascii, push_fa, push_fa_grouped, push_persian_digits};
use crate::ids::{formatted_id, legal_id, person_id, short_id, typo_id};
use crate::random::{cumulate, log_uniform, mix64, normal, pick_cum, unit, GOLDEN};
use crate::text::{CITIES, CORRECTIONS, HOURS, MONTHS, PLATE_LETTERS, SEASONS, SHARED, VIOLATIONS};
use crate::wire::{malform, AttOut, Num, PythonAscii, WireOut};
use karpoosheh_schemas::solar_hijri;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficConfig {
    /// How many records to generate.
    pub notices: u64,
    /// Share of deliberately bad records (rejected or dead-lettered).
    pub bad_ratio: f64,
    /// Share of exact re-sends of an earlier valid record.
    pub duplicate_ratio: f64,
    /// Recipient population size.
    pub mailboxes: u64,
    pub seed: u64,
    /// "Now": `sent_at` is a few minutes before it, `expires_at` 1-10 years after.
    pub start: DateTime<Utc>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            notices: 1_000_000,
            bad_ratio: 0.03,
            duplicate_ratio: 0.01,
            mailboxes: 2_000_000,
            seed: 42,
            start: Utc::now(),
        }
    }
}

/// What the engine must do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A valid new notice: stored, with a tracking code.
    Stored,
    /// A byte-identical re-send of an earlier stored notice: absorbed.
    Duplicate,
    /// Rejected with this (primary) reason, reported to the agency.
    Rejected(Reason),
    /// Undecodable: dead-lettered with this reason.
    DeadLetter(Reason),
}

impl Expect {
    /// The reason for a rejected or dead-lettered record.
    pub fn reason(self) -> Option<Reason> {
        match self {
            Expect::Rejected(r) | Expect::DeadLetter(r) => Some(r),
            Expect::Stored | Expect::Duplicate => None,
        }
    }
}

/// One generated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The bytes the agency sends.
    pub payload: Vec<u8>,
    /// The sending agency (the topic the record arrives on).
    pub agency: &'static str,
    pub expect: Expect,
}

/// The traffic model. Cheap to share between threads.
#[derive(Debug)]
pub struct Traffic {
    cfg: TrafficConfig,
    bad_ratio: f64,
    dup_ratio: f64,
    class_key: u64,
    origin_key: u64,
    record_key: u64,
    agency_cum: [f64; AGENCY_COUNT],
    bad_cum: [f64; BAD_MIX.len()],
    city_cum: [f64; CITIES.len()],
    person_pop: u64,
    legal_pop: u64,
    top_legal: u64,
    start_secs: i64,
    /// The Tehran-local day number (days since 1970-01-01) of `start`.
    day0: i64,
    /// Jalali dates of the local days `day0 + JALALI_FROM ..= day0 + JALALI_TO`.
    jalali: Vec<(u16, u8, u8)>,
    jy: u16,
    jm: u8,
    /// Four digits from the seed in every reference, so runs with different
    /// seeds into one store do not collide.
    ref_tag: u16,
}

/// Where a record comes from, decided by `(seed, i)` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Valid,
    Duplicate(u64),
    Conflict(u64),
    Bad(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Re-send of this record with a corrected body; the payload is
    /// record `by`'s.
    Conflict {
        by: u64,
    },
    Bad(Reason),
}

impl Traffic {
    pub fn new(cfg: TrafficConfig) -> Self {
        let clean = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let bad_ratio = clean(cfg.bad_ratio);
        let dup_ratio = clean(cfg.duplicate_ratio).min(1.0 - bad_ratio);
        let seed = cfg.seed;

        let mut agency_cum = [0.0; AGENCY_COUNT];
        cumulate(AGENCIES.iter().map(|a| a.share), &mut agency_cum);
        let mut bad_cum = [0.0; BAD_MIX.len()];
        cumulate(BAD_MIX.iter().map(|b| b.1), &mut bad_cum);
        let mut city_cum = [0.0; CITIES.len()];
        cumulate(CITIES.iter().map(|c| c.2), &mut city_cum);

        let mailboxes = cfg.mailboxes.max(1);
        let legal_pop = if mailboxes >= 2 {
            (mailboxes / 20).clamp(1, mailboxes - 1)
        } else {
            0
        };
        let person_pop = mailboxes - legal_pop;
        let top_legal = legal_pop.min(200);

        let start_secs = cfg.start.timestamp();
        let day0 = (start_secs + TEHRAN_OFFSET_SECS).div_euclid(86_400);
        let jalali = (JALALI_FROM..=JALALI_TO)
            .map(|off| {
                let (gy, gm, gd) = civil_from_days(day0 + off);
                let (jy, jm, jd) = solar_hijri(gy, gm, gd);
                (jy as u16, jm as u8, jd as u8)
            })
            .collect::<Vec<_>>();
        let (jy, jm, _) = jalali[(-JALALI_FROM) as usize];

        Traffic {
            bad_ratio,
            dup_ratio,
            class_key: mix64(seed ^ 0x636c_6173_735f_6b65),
            origin_key: mix64(seed ^ 0x6f72_6967_696e_5f6b),
            record_key: mix64(seed ^ 0x7265_636f_7264_5f6b),
            agency_cum,
            bad_cum,
            city_cum,
            person_pop,
            legal_pop,
            top_legal,
            start_secs,
            day0,
            jalali,
            jy,
            jm,
            ref_tag: (seed % 10_000) as u16,
            cfg,
        }
    }

    pub fn config(&self) -> &TrafficConfig {
        &self.cfg
    }

    /// Record number `i` (0-based). Pure and deterministic in (seed, i):
    /// the same i always gives the same bytes, so chunks can be generated
    /// in parallel and re-generated for verification.
    pub fn record(&self, i: u64) -> Generated {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            match self.class(i) {
                Class::Valid => self.build(i, Mode::Normal, &mut s),
                Class::Duplicate(j) => {
                    let g = self.build(j, Mode::Normal, &mut s);
                    Generated {
                        expect: Expect::Duplicate,
                        ..g
                    }
                }
                Class::Conflict(j) => self.build(j, Mode::Conflict { by: i }, &mut s),
                Class::Bad(r) => self.build(i, Mode::Bad(r), &mut s),
            }
        })
    }

    /// Generates records [start, end) in parallel with rayon, in order.
    pub fn chunk(&self, start: u64, end: u64) -> Vec<Generated> {
        (start..end.max(start))
            .into_par_iter()
            .map(|i| self.record(i))
            .collect()
    }

    /// The agencies and their traffic shares, for reports.
    pub fn agencies() -> &'static [(&'static str, f64)] {
        &AGENCY_SHARES
    }

    /// The mix of bad records: each reason and its share of the bad
    /// records (the shares add up to 1).
    pub fn bad_mix() -> &'static [(Reason, f64)] {
        &BAD_MIX
    }

    /// The recipient of record i when it is a valid notice (stored or a
    /// duplicate), for the demo to print an example mailbox to inspect;
    /// None for bad records.
    pub fn recipient_of(&self, i: u64) -> Option<MailboxId> {
        let j = match self.class(i) {
            Class::Valid => i,
            Class::Duplicate(j) => j,
            Class::Conflict(_) | Class::Bad(_) => return None,
        };
        let mut rng = self.rng(j);
        Some(self.head(&mut rng, None).recipient)
    }

    /// What the engine must do with record i, without generating it.
    pub fn expect_of(&self, i: u64) -> Expect {
        match self.class(i) {
            Class::Valid => Expect::Stored,
            Class::Duplicate(_) => Expect::Duplicate,
            Class::Conflict(_) => Expect::Rejected(Reason::ReferenceConflict),
            Class::Bad(r) if r.is_undecodable() => Expect::DeadLetter(r),
            Class::Bad(r) => Expect::Rejected(r),
        }
    }

    /// For a duplicate or a reference conflict: the earlier stored record
    /// it repeats (same agency and reference).
    pub fn original_of(&self, i: u64) -> Option<u64> {
        match self.class(i) {
            Class::Duplicate(j) | Class::Conflict(j) => Some(j),
            Class::Valid | Class::Bad(_) => None,
        }
    }

    // ---- classification -------------------------------------------------

    fn class_unit(&self, i: u64) -> f64 {
        unit(mix64(self.class_key.wrapping_add(i.wrapping_mul(GOLDEN))))
    }

    fn class(&self, i: u64) -> Class {
        let u = self.class_unit(i);
        if u < self.bad_ratio {
            let r = BAD_MIX[pick_cum(&self.bad_cum, u / self.bad_ratio)].0;
            if r == Reason::ReferenceConflict {
                self.find_origin(i).map_or(Class::Valid, Class::Conflict)
            } else {
                Class::Bad(r)
            }
        } else if u < self.bad_ratio + self.dup_ratio {
            self.find_origin(i).map_or(Class::Valid, Class::Duplicate)
        } else {
            Class::Valid
        }
    }

    /// An earlier record that is a plain valid notice, a little before i
    /// (re-sends follow within minutes to hours), or None near the start.
    fn find_origin(&self, i: u64) -> Option<u64> {
        if i == 0 {
            return None;
        }
        let h = mix64(self.origin_key.wrapping_add(i.wrapping_mul(GOLDEN)));
        let mut j = i - 1 - h % i.min(ORIGIN_WINDOW);
        for _ in 0..1024 {
            if self.class_unit(j) >= self.bad_ratio + self.dup_ratio {
                return Some(j);
            }
            j = j.checked_sub(1)?;
        }
        None
    }

    fn rng(&self, i: u64) -> SmallRng {
        SmallRng::seed_from_u64(mix64(self.record_key.wrapping_add(i.wrapping_mul(GOLDEN))))
    }

    // ---- generation -----------------------------------------------------

    /// The first draws of a record: agency and recipient.
    fn head(&self, rng: &mut SmallRng, bad: Option<Reason>) -> Head {
        let mut agency = pick_cum(&self.agency_cum, rng.random::<f64>());
        if bad == Some(Reason::InvalidUtf8) && AGENCIES[agency].json == JsonStyle::PythonAscii {
            // An ASCII-only serializer cannot produce a Windows-1256 payload;
            // legacy municipal systems are where that happens.
            agency = MUNICIPALITY;
        }
        let legal_draw = rng.random::<f64>();
        let legal = self.legal_pop > 0
            && legal_draw < AGENCIES[agency].legal_share
            && bad != Some(Reason::WrongLength);
        let recipient = self.draw_recipient(rng, legal);
        Head {
            agency,
            legal,
            recipient,
        }
    }

    fn draw_recipient(&self, rng: &mut SmallRng, legal: bool) -> MailboxId {
        let u = rng.random::<f64>();
        if legal {
            let k = if u < TOP_LEGAL_SHARE_OF_LEGAL {
                rng.random_range(0..self.top_legal)
            } else if u < 0.40 {
                rng.random_range(0..(self.legal_pop / 20).max(1))
            } else {
                rng.random_range(0..self.legal_pop)
            };
            legal_id(k)
        } else {
            // A tenth of the notices go to the busiest 1% (landlords,
            // business owners, car owners with many fines).
            let k = if u < 0.10 {
                rng.random_range(0..(self.person_pop / 100).max(1))
            } else {
                rng.random_range(0..self.person_pop)
            };
            person_id(k)
        }
    }

    fn build(&self, i: u64, mode: Mode, s: &mut Scratch) -> Generated {
        let bad = match mode {
            Mode::Bad(r) => Some(r),
            _ => None,
        };
        let mut rng = self.rng(i);
        let head = self.head(&mut rng, bad);
        let spec = &AGENCIES[head.agency];
        let variant = pick_variant(spec.variants, head.legal, rng.random::<f64>());
        let vals = self.draw_vals(spec, &mut rng);
        let Scratch {
            title,
            body,
            sig,
            recipient,
            reference,
            sent_at,
            expires_at,
            batch,
            att_names,
            text,
        } = s;

        // Reference: unique per valid record.
        reference.clear();
        reference.push_str(spec.id);
        reference.push('-');
        push_ascii(reference, self.jy as u64, 4);
        reference.push('-');
        push_ascii(reference, self.ref_tag as u64, 4);
        reference.push('-');
        push_ascii(reference, i, 9);

        // Recipient, as the agency's system writes it.
        recipient.clear();
        let style = rng.random::<f64>();
        match bad {
            Some(Reason::BadCheckDigit) => typo_id(head.recipient, &mut rng, recipient),
            Some(Reason::WrongLength) => short_id(head.recipient, &mut rng, recipient),
            Some(Reason::InvalidCharacter) => formatted_id(head.recipient, &mut rng, recipient),
            _ => {
                use std::fmt::Write;
                if style < 0.04 {
                    push_persian_digits(recipient, &head.recipient.to_string());
                } else {
                    let _ = write!(recipient, "{}", head.recipient);
                    if style < 0.08 {
                        recipient.push_str("@iran");
                    }
                }
            }
        }

        // Title.
        title.clear();
        let t = variant.titles[rng.random_range(0..variant.titles.len())];
        self.render(t, &vals, reference, title);
        if bad == Some(Reason::TitleTooLong) {
            // The whole notice pasted into the subject line.
            title.push_str(" - ");
            let mut n = 0;
            while title.chars().count() <= 210 && n < 8 {
                let l = if n == 0 {
                    variant.leads[0]
                } else {
                    spec.filler[n % spec.filler.len()]
                };
                self.render(l, &vals, reference, title);
                title.push(' ');
                n += 1;
            }
            title.truncate(title.trim_end().len());
        }

        // Body, to a length drawn from a log-normal distribution.
        let z = normal(&mut rng);
        let target = (BODY_MEDIAN * (BODY_SIGMA * z).exp()).clamp(BODY_MIN, BODY_MAX) as usize;
        self.compose_body(
            spec, variant, &vals, head.legal, target, &mut rng, reference, body, sig,
        );
        if let Mode::Conflict { by } = mode {
            body.push('\n');
            let c = CORRECTIONS[(by % CORRECTIONS.len() as u64) as usize];
            self.render(c, &vals, reference, body);
        }

        // Attachments (metadata only).
        let mut atts: [AttOut<'_>; 2] = [AttOut::EMPTY, AttOut::EMPTY];
        let mut shas = [[0u8; 64]; 2];
        let mut n_att = 0;
        if rng.random_bool(0.25) {
            n_att = if rng.random_bool(0.8) { 1 } else { 2 };
        }
        let mut att_kinds = [(0usize, MediaKind::Pdf, 0u64); 2];
        for (k, a) in att_kinds.iter_mut().enumerate().take(n_att) {
            let media = match rng.random::<f64>() {
                x if x < 0.80 => MediaKind::Pdf,
                x if x < 0.92 => MediaKind::Jpeg,
                _ => MediaKind::Png,
            };
            let size = log_uniform(&mut rng, 30_000.0, 3_000_000.0) as u64;
            *a = (rng.random_range(0..spec.attachments.len()) + k, media, size);
        }
        match bad {
            Some(Reason::AttachmentTypeNotAllowed) => {
                n_att = 1;
                att_kinds[0] = (0, MediaKind::Exe, rng.random_range(200_000..2_500_000));
            }
            Some(Reason::AttachmentTooLarge) => {
                // A whole scanned case file: over the 20 MiB limit for one
                // attachment, under the 50 MiB total.
                n_att = 1;
                att_kinds[0] = (
                    0,
                    MediaKind::ScannedPdf,
                    rng.random_range(21 << 20..48 << 20),
                );
            }
            _ => {}
        }
        for k in 0..n_att {
            let (name_ix, media, _) = att_kinds[k];
            let name = &mut att_names[k];
            name.clear();
            match media {
                MediaKind::Exe => name.push_str("نرم\u{200c}افزار_پرداخت.exe"),
                MediaKind::ScannedPdf => name.push_str("اسکن_کامل_پرونده.pdf"),
                _ => {
                    name.push_str(spec.attachments[name_ix % spec.attachments.len()]);
                    if k == 1 {
                        name.push_str("_۲");
                    }
                    name.push_str(media.ext());
                }
            }
            let mut h = Sha256::new();
            h.update(b"karpoosheh-attachment");
            h.update(self.cfg.seed.to_le_bytes());
            h.update(i.to_le_bytes());
            h.update([k as u8]);
            hex_into(&h.finalize(), &mut shas[k]);
        }
        for k in 0..n_att {
            atts[k] = AttOut {
                name: &att_names[k],
                media_type: att_kinds[k].1.media_type(),
                size: Num::U(att_kinds[k].2),
                sha256: std::str::from_utf8(&shas[k]).expect("hex is ASCII"),
            };
        }

        // Access level, life event, times, batch.
        let level: u64 = match rng.random::<f64>() {
            x if x < spec.access.1 => 3,
            x if x < spec.access.0 + spec.access.1 => 2,
            _ => 1,
        };
        let mut life = variant.life;
        if head.legal && life == LifeEvent::Tax && rng.random_bool(0.3) {
            life = LifeEvent::Business;
        }
        let sent_secs = match mode {
            Mode::Conflict { .. } => self.start_secs - rng.random_range(1..20),
            _ => self.start_secs - rng.random_range(20..900),
        };
        let micros = rng.random_range(0..1_000_000u32);
        sent_at.clear();
        push_rfc3339(
            sent_at,
            sent_secs,
            spec.time.micros().then_some(micros),
            spec.time.tehran(),
        );
        let years = spec.expiry_years[rng.random_range(0..spec.expiry_years.len())] as i64;
        let extra = if years < 10 {
            rng.random_range(0..60)
        } else {
            -1
        };
        let days_ahead = if bad == Some(Reason::ExpiryInPast) {
            // A copy-pasted expiry from an old template.
            -rng.random_range(1..900)
        } else {
            years * 365 + extra
        };
        expires_at.clear();
        let exp_secs = (self.day0 + days_ahead) * 86_400 + 86_399 - TEHRAN_OFFSET_SECS;
        push_rfc3339(expires_at, exp_secs, None, spec.time.tehran());
        let has_batch = rng.random_bool(spec.batch_prob);
        if has_batch {
            batch.clear();
            batch.push_str(spec.id);
            batch.push('-');
            push_ascii(batch, self.jy as u64, 4);
            push_ascii(batch, self.jm as u64, 2);
            batch.push_str("-b");
            push_ascii(batch, i / 20_000 + 1, 4);
        }

        // The envelope.
        let mut wrong_size = [AttOut::EMPTY];
        let mut wire = WireOut {
            schema_version: Num::U(1),
            agency: spec.id,
            reference: reference.as_str(),
            recipient: Some(recipient.as_str()),
            kind: variant.kind.as_str(),
            title: Some(title.as_str()),
            body: body.as_str(),
            attachments: if n_att == 0 && spec.omit_defaults {
                None
            } else {
                Some(&atts[..n_att])
            },
            min_access_level: if level == 1 && spec.omit_defaults {
                None
            } else {
                Some(Num::U(level))
            },
            life_event: Some(life.as_str()),
            expires_at: Some(expires_at.as_str()),
            sent_at: Some(sent_at.as_str()),
            batch_id: if has_batch {
                Some(batch.as_str())
            } else {
                None
            },
        };
        match bad {
            Some(Reason::MissingField) => match rng.random::<f64>() {
                x if x < 0.60 => wire.title = None,
                x if x < 0.85 => wire.expires_at = None,
                _ => wire.sent_at = None,
            },
            Some(Reason::UnknownKind) => {
                wire.kind = BAD_KINDS[rng.random_range(0..BAD_KINDS.len())]
            }
            Some(Reason::WrongType) => match rng.random::<f64>() {
                x if x < 0.6 => wire.min_access_level = Some(Num::S("2")),
                x if x < 0.8 => wire.schema_version = Num::S("1"),
                _ => {
                    // A size written as a string; add an attachment if needed.
                    wrong_size[0] = if n_att > 0 { atts[0] } else { AttOut::FALLBACK };
                    wrong_size[0].size = Num::S("245760");
                    wire.attachments = Some(&wrong_size[..]);
                }
            },
            _ => {}
        }

        let mut out = Vec::with_capacity(match spec.json {
            JsonStyle::Compact => body.len() + title.len() + 640,
            JsonStyle::PythonAscii => 3 * (body.len() + title.len()) + 720,
        });
        match spec.json {
            JsonStyle::Compact => serde_json::to_writer(&mut out, &wire),
            JsonStyle::PythonAscii => wire.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out,
                PythonAscii,
            )),
        }
        .expect("serializing to a Vec cannot fail");

        let expect = match (mode, bad) {
            (Mode::Conflict { .. }, _) => Expect::Rejected(Reason::ReferenceConflict),
            (_, Some(Reason::MalformedJson)) => {
                malform(&mut out, &mut rng);
                Expect::DeadLetter(Reason::MalformedJson)
            }
            (_, Some(Reason::InvalidUtf8)) => {
                text.clear();
                text.push_str(std::str::from_utf8(&out).expect("serde_json writes UTF-8"));
                out.clear();
                to_windows_1256(text, &mut out);
                Expect::DeadLetter(Reason::InvalidUtf8)
            }
            (_, Some(r)) if r.is_undecodable() => Expect::DeadLetter(r),
            (_, Some(r)) => Expect::Rejected(r),
            (_, None) => Expect::Stored,
        };
        Generated {
            payload: out,
            agency: spec.id,
            expect,
        }
    }

    fn draw_vals(&self, spec: &AgencySpec, rng: &mut SmallRng) -> Vals {
        let (lo, hi, round) = spec.amount;
        let amount = ((log_uniform(rng, lo as f64, hi as f64) as u64 / round).max(1)) * round;
        Vals {
            amount,
            case: rng.random_range(0..1_000_000_000_000),
            file: rng.random_range(1_000_000..10_000_000),
            pay: rng.random_range(1_000_000_000_000..10_000_000_000_000),
            branch: rng.random_range(1..121),
            count: rng.random_range(2..37),
            usage: rng.random_range(40..1_200),
            hour: rng.random_range(0..HOURS.len() as u8),
            violation: rng.random_range(0..VIOLATIONS.len() as u8),
            city: pick_cum(&self.city_cum, rng.random::<f64>()) as u8,
            issue_back: rng.random_range(0..4),
            due: rng.random_range(7..61),
            period_back: rng.random_range(1..4),
            plate: (
                rng.random_range(11..100),
                rng.random_range(0..PLATE_LETTERS.len() as u8),
                rng.random_range(111..1000),
                rng.random_range(10..100),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compose_body(
        &self,
        spec: &AgencySpec,
        variant: &Variant,
        vals: &Vals,
        legal: bool,
        target: usize,
        rng: &mut SmallRng,
        reference: &str,
        body: &mut String,
        sig: &mut String,
    ) {
        sig.clear();
        self.render(spec.signature, vals, reference, sig);
        body.clear();
        body.push_str(if legal {
            spec.salutation_legal
        } else {
            spec.salutation
        });
        body.push('\n');
        let lead = variant.leads[rng.random_range(0..variant.leads.len())];
        self.render(lead, vals, reference, body);

        // Filler sentences from the agency's pool and the shared pool, in a
        // random order without repeats until both are used up.
        let n = spec.filler.len() + SHARED.len();
        let first = rng.random_range(0..n);
        let stride = STRIDES
            .iter()
            .copied()
            .find(|&p| n % p != 0 && rng.random_bool(0.5))
            .unwrap_or(1);
        let budget = target.saturating_sub(sig.len() + 1);
        let mut in_paragraph = 1;
        let mut after_label = !lead.ends_with('.');
        let mut k = 0;
        while body.len() < budget && k < 4 * n {
            let ix = (first + k * stride) % n;
            k += 1;
            let tpl = if ix < spec.filler.len() {
                spec.filler[ix]
            } else {
                SHARED[ix - spec.filler.len()]
            };
            // "Label: value" lines have no full stop and stand on their own line.
            let label = !tpl.ends_with('.');
            if label || after_label || (in_paragraph >= 2 && rng.random_bool(0.45)) {
                body.push('\n');
                in_paragraph = 0;
            } else {
                body.push(' ');
            }
            self.render(tpl, vals, reference, body);
            in_paragraph += 1;
            after_label = label;
        }
        body.push('\n');
        body.push_str(sig);
    }

    /// Expands `{x}` placeholders (see the sentence pools) into `out`.
    fn render(&self, tpl: &str, v: &Vals, reference: &str, out: &mut String) {
        let mut rest = tpl;
        while let Some(p) = rest.find('{') {
            out.push_str(&rest[..p]);
            let code = rest.as_bytes()[p + 1];
            self.placeholder(code, v, reference, out);
            rest = &rest[p + 3..];
        }
        out.push_str(rest);
    }

    fn placeholder(&self, code: u8, v: &Vals, reference: &str, out: &mut String) {
        match code {
            b'a' => push_fa_grouped(out, v.amount),
            b'c' => {
                push_fa(out, self.jy as u64, 4);
                push_fa(out, v.case, 12);
            }
            b'n' => push_fa(out, v.file as u64, 7),
            b'k' => push_fa(out, v.pay, 13),
            b'b' => push_fa(out, v.branch as u64, 1),
            b'm' => push_fa(out, v.count as u64, 1),
            b'u' => push_fa(out, v.usage as u64, 1),
            b'h' => out.push_str(HOURS[v.hour as usize]),
            b'f' => out.push_str(VIOLATIONS[v.violation as usize]),
            b's' => out.push_str(CITIES[v.city as usize].0),
            b'v' => out.push_str(CITIES[v.city as usize].1),
            b't' => self.push_jalali(out, -(v.issue_back as i64)),
            b'd' => self.push_jalali(out, v.due as i64),
            b'y' => push_fa(out, self.jy as u64, 4),
            b'z' => push_fa(out, self.jy as u64 - 1, 4),
            b'p' => {
                let m = self.jy as u32 * 12 + self.jm as u32 - 1 - v.period_back as u32;
                out.push_str(MONTHS[(m % 12) as usize]);
                out.push(' ');
                push_fa(out, (m / 12) as u64, 4);
            }
            b'q' => {
                let q = self.jy as u32 * 4 + (self.jm as u32 - 1) / 3 - 1;
                out.push_str(SEASONS[(q % 4) as usize]);
                out.push(' ');
                push_fa(out, (q / 4) as u64, 4);
            }
            b'l' => {
                let (a, l, b, c) = v.plate;
                push_fa(out, a as u64, 2);
                out.push(' ');
                out.push_str(PLATE_LETTERS[l as usize]);
                out.push(' ');
                push_fa(out, b as u64, 3);
                out.push_str(" ایران ");
                push_fa(out, c as u64, 2);
            }
            b'r' => out.push_str(reference),
            _ => debug_assert!(false, "unknown placeholder {{{}}}", code as char),
        }
    }

    fn push_jalali(&self, out: &mut String, offset_days: i64) {
        let ix = (offset_days.clamp(JALALI_FROM, JALALI_TO) - JALALI_FROM) as usize;
        let (y, m, d) = self.jalali[ix];
        push_fa(out, y as u64, 4);
        out.push('/');
        push_fa(out, m as u64, 2);
        out.push('/');
        push_fa(out, d as u64, 2);
    }
}

struct Head {
    agency: usize,
    legal: bool,
    recipient: MailboxId,
}

/// The per-record values the sentence placeholders show, drawn once so a
/// notice is consistent with itself.
struct Vals {
    amount: u64,
    case: u64,
    file: u32,
    pay: u64,
    branch: u32,
    count: u32,
    usage: u32,
    hour: u8,
    violation: u8,
    city: u8,
    issue_back: u8,
    due: u8,
    period_back: u8,
    plate: (u8, u8, u16, u8),
}

/// Reused buffers, one set per thread.
#[derive(Default)]
struct Scratch {
    title: String,
    body: String,
    sig: String,
    recipient: String,
    reference: String,
    sent_at: String,
    expires_at: String,
    batch: String,
    att_names: [String; 2],
    text: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

// ---- the model's parameters ----------------------------------------------

/// Body length: log-normal around this median (UTF-8 bytes), clamped.
const BODY_MEDIAN: f64 = 860.0;
const BODY_SIGMA: f64 = 0.55;
const BODY_MIN: f64 = 300.0;
const BODY_MAX: f64 = 5_600.0;
/// Re-sends and corrections follow their original within this many records.
const ORIGIN_WINDOW: u64 = 20_000;
/// 2% of all traffic to the top 200 legal entities, out of about 14.7% legal.
const TOP_LEGAL_SHARE_OF_LEGAL: f64 = 0.136;
const JALALI_FROM: i64 = -10;
const JALALI_TO: i64 = 120;
const STRIDES: [usize; 8] = [3, 5, 7, 11, 13, 17, 19, 23];

/// Bad records: reason (the primary one the engine reports) and share.
const BAD_MIX: [(Reason, f64); 13] = [
    (Reason::BadCheckDigit, 0.24),
    (Reason::MissingField, 0.20),
    (Reason::WrongLength, 0.10),
    (Reason::ExpiryInPast, 0.07),
    (Reason::UnknownKind, 0.06),
    (Reason::WrongType, 0.06),
    (Reason::TitleTooLong, 0.05),
    (Reason::MalformedJson, 0.05),
    (Reason::InvalidCharacter, 0.04),
    (Reason::AttachmentTypeNotAllowed, 0.04),
    (Reason::AttachmentTooLarge, 0.04),
    (Reason::InvalidUtf8, 0.03),
    (Reason::ReferenceConflict, 0.02),
];

const BAD_KINDS: [&str; 6] = [
    "service-notice",
    "eblaghiye",
    "notification",
    "Bill",
    "invoice",
    "ServiceNotice",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaKind {
    Pdf,
    Jpeg,
    Png,
    Exe,
    ScannedPdf,
}

impl MediaKind {
    fn media_type(self) -> &'static str {
        match self {
            MediaKind::Pdf | MediaKind::ScannedPdf => "application/pdf",
            MediaKind::Jpeg => "image/jpeg",
            MediaKind::Png => "image/png",
            MediaKind::Exe => "application/x-msdownload",
        }
    }
    fn ext(self) -> &'static str {
        match self {
            MediaKind::Pdf | MediaKind::ScannedPdf => ".pdf",
            MediaKind::Jpeg => ".jpg",
            MediaKind::Png => ".png",
            MediaKind::Exe => ".exe",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::legal_id;
    use chrono::TimeZone;
    use karpoosheh_schemas::{decode_notice, Limits, MailboxKind, Notice};
    use std::collections::{HashMap, HashSet};

    const N: u64 = 20_000;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
    }

    fn traffic() -> Traffic {
        Traffic::new(TrafficConfig {
            notices: N,
            start: start(),
            ..TrafficConfig::default()
        })
    }

    fn decode(p: &[u8]) -> Result<Notice, karpoosheh_schemas::Rejection> {
        decode_notice(
            p,
            &Limits::default(),
            start() + chrono::Duration::minutes(1),
        )
    }

    fn is_persian(s: &str) -> bool {
        s.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c))
    }

    #[test]
    fn deterministic() {
        let a = traffic();
        let b = traffic();
        for i in (0..N).step_by(7) {
            assert_eq!(a.record(i), a.record(i));
            assert_eq!(a.record(i), b.record(i));
        }
        let chunk = a.chunk(1_000, 3_000);
        assert_eq!(chunk.len(), 2_000);
        for (k, g) in chunk.iter().enumerate() {
            assert_eq!(*g, a.record(1_000 + k as u64));
        }
        let other = Traffic::new(TrafficConfig {
            seed: 7,
            start: start(),
            ..TrafficConfig::default()
        });
        assert_ne!(a.record(5).payload, other.record(5).payload);
    }

    #[test]
    fn expectations_match_the_decoder() {
        let t = traffic();
        let mut by_reason: HashMap<Reason, u64> = HashMap::new();
        let mut references = HashSet::new();
        for i in 0..N {
            let g = t.record(i);
            assert_eq!(g.expect, t.expect_of(i), "record {i}");
            let d = decode(&g.payload);
            match g.expect {
                Expect::Stored => {
                    let n = d.unwrap_or_else(|e| {
                        panic!(
                            "record {i} should be valid: {:?}\n{}",
                            e.problems,
                            String::from_utf8_lossy(&g.payload)
                        )
                    });
                    assert_eq!(n.agency.as_str(), g.agency);
                    assert_eq!(Some(n.recipient), t.recipient_of(i), "record {i}");
                    assert!(
                        references.insert(n.reference.clone()),
                        "reference {} reused",
                        n.reference
                    );
                    let title_chars = n.title.chars().count();
                    assert!(
                        (20..=120).contains(&title_chars),
                        "title of {title_chars} chars: {}",
                        n.title
                    );
                    assert!(
                        n.body.len() >= 300 && n.body.len() <= 6_144,
                        "body of {} bytes",
                        n.body.len()
                    );
                    assert!(is_persian(&n.title) && is_persian(&n.body));
                    assert!(n.attachments.len() <= 2);
                    for a in &n.attachments {
                        assert!((30_000..=3_000_000).contains(&a.size));
                    }
                    let years = (n.expires_at - start()).num_days() as f64 / 365.25;
                    assert!((0.99..=10.0).contains(&years), "expires in {years} years");
                    assert!(
                        n.sent_at < start() && n.sent_at > start() - chrono::Duration::minutes(16)
                    );
                }
                Expect::Duplicate => {
                    let j = t.original_of(i).expect("a duplicate has an original");
                    assert!(j < i);
                    assert_eq!(t.expect_of(j), Expect::Stored);
                    assert_eq!(
                        g.payload,
                        t.record(j).payload,
                        "duplicate {i} of {j} is not byte-identical"
                    );
                    assert_eq!(t.recipient_of(i), t.recipient_of(j));
                    assert!(d.is_ok());
                }
                Expect::Rejected(Reason::ReferenceConflict) => {
                    let j = t.original_of(i).expect("a conflict has an original");
                    assert!(j < i);
                    assert_eq!(t.expect_of(j), Expect::Stored);
                    assert_eq!(t.recipient_of(i), None);
                    let n = d.expect("a conflicting re-send is itself a valid envelope");
                    let o = decode(&t.record(j).payload).unwrap();
                    assert_eq!(
                        (&n.agency, &n.reference, n.recipient),
                        (&o.agency, &o.reference, o.recipient)
                    );
                    assert_ne!(n.content_hash(), o.content_hash());
                    *by_reason.entry(Reason::ReferenceConflict).or_default() += 1;
                }
                Expect::Rejected(r) | Expect::DeadLetter(r) => {
                    let e = d.expect_err("a bad record must not decode");
                    assert_eq!(
                        e.primary_reason(),
                        r,
                        "record {i}: {:?}\n{}",
                        e.problems,
                        String::from_utf8_lossy(&g.payload)
                    );
                    assert_eq!(e.problems.len(), 1, "record {i}: {:?}", e.problems);
                    assert_eq!(
                        r.is_undecodable(),
                        matches!(g.expect, Expect::DeadLetter(_))
                    );
                    assert_eq!(t.recipient_of(i), None);
                    *by_reason.entry(r).or_default() += 1;
                }
            }
        }
        for (r, _) in Traffic::bad_mix() {
            assert!(
                by_reason.get(r).copied().unwrap_or(0) > 0,
                "no {r} records in {N}"
            );
        }
    }

    #[test]
    fn shares() {
        let t = traffic();
        let (mut bad, mut dup) = (0u64, 0u64);
        let mut agencies: HashMap<&str, u64> = HashMap::new();
        let mut legal = 0u64;
        let mut valid = 0u64;
        let mut mix: HashMap<Reason, u64> = HashMap::new();
        for i in 0..N {
            let g = t.record(i);
            *agencies.entry(g.agency).or_default() += 1;
            match g.expect {
                Expect::Rejected(r) | Expect::DeadLetter(r) => {
                    bad += 1;
                    *mix.entry(r).or_default() += 1;
                }
                Expect::Duplicate => dup += 1,
                Expect::Stored => {
                    valid += 1;
                    if t.recipient_of(i).unwrap().kind() == MailboxKind::Legal {
                        legal += 1;
                    }
                }
            }
        }
        let share = |n: u64| n as f64 / N as f64;
        assert!(
            (share(bad) - 0.03).abs() <= 0.01,
            "bad share {}",
            share(bad)
        );
        assert!(
            (share(dup) - 0.01).abs() <= 0.005,
            "duplicate share {}",
            share(dup)
        );
        for (id, s) in Traffic::agencies() {
            let got = share(agencies.get(id).copied().unwrap_or(0));
            assert!((got - s).abs() < 0.02, "{id}: {got} vs {s}");
        }
        let legal_share = legal as f64 / valid as f64;
        assert!(
            (0.12..0.18).contains(&legal_share),
            "legal share {legal_share}"
        );
        // Bad check digits and missing fields are the most common problems.
        let most = |r: Reason| mix.get(&r).copied().unwrap_or(0);
        for (r, _) in Traffic::bad_mix().iter().skip(2) {
            assert!(
                most(Reason::BadCheckDigit) > most(*r) && most(Reason::MissingField) > most(*r),
                "{r}"
            );
        }
    }

    #[test]
    fn top_companies_get_their_share() {
        let t = traffic();
        let top: HashSet<MailboxId> = (0..200).map(legal_id).collect();
        assert_eq!(top.len(), 200);
        let hits = (0..N)
            .filter(|&i| t.recipient_of(i).is_some_and(|r| top.contains(&r)))
            .count();
        let share = hits as f64 / N as f64;
        assert!((0.012..0.03).contains(&share), "top-200 share {share}");
    }

    #[test]
    fn payload_sizes() {
        let t = traffic();
        let mut sizes: Vec<usize> = (0..N)
            .map(|i| t.record(i))
            .filter(|g| g.expect == Expect::Stored)
            .map(|g| g.payload.len())
            .collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!(
            (900..=1600).contains(&median),
            "median valid payload {median} bytes"
        );
        assert!(*sizes.last().unwrap() < 64 * 1024);
    }

    #[test]
    fn payloads_are_single_ndjson_lines() {
        let t = traffic();
        for i in 0..N {
            let g = t.record(i);
            assert!(!g.payload.contains(&b'\n'), "record {i} has a raw newline");
            assert!(!g.payload.is_empty());
        }
    }

    #[test]
    fn recipient_formats() {
        let t = traffic();
        let (mut persian, mut address, mut valid) = (0, 0, 0);
        for i in 0..N {
            let g = t.record(i);
            if g.expect != Expect::Stored || g.agency == "judiciary" {
                continue;
            }
            valid += 1;
            let v: serde_json::Value = serde_json::from_slice(&g.payload).unwrap();
            let r = v["recipient"].as_str().unwrap();
            persian += r.starts_with(|c| ('۰'..='۹').contains(&c)) as u32;
            address += r.ends_with("@iran") as u32;
        }
        let (p, a) = (persian as f64 / valid as f64, address as f64 / valid as f64);
        assert!((0.03..0.05).contains(&p), "persian digits {p}");
        assert!((0.03..0.05).contains(&a), "@iran {a}");
    }

    #[test]
    fn judiciary_is_python_ascii() {
        let t = traffic();
        let (mut seen, mut zwnj) = (0, 0);
        for i in 0..2_000 {
            let g = t.record(i);
            if g.agency != "judiciary" || g.expect != Expect::Stored {
                continue;
            }
            seen += 1;
            assert!(g.payload.is_ascii());
            let text = std::str::from_utf8(&g.payload).unwrap();
            assert!(
                text.starts_with("{\"schema_version\": 1, \"agency\": \"judiciary\""),
                "{text}"
            );
            assert!(text.contains("\\u06"));
            let n = decode(&g.payload).unwrap();
            assert!(is_persian(&n.title) && is_persian(&n.body));
            zwnj += n.body.contains('\u{200c}') as u32;
        }
        assert!(seen > 100);
        assert!(
            zwnj * 10 > seen * 9,
            "only {zwnj} of {seen} bodies have a ZWNJ"
        );
    }

    #[test]
    fn jalali_placeholder() {
        let t = traffic();
        let mut s = String::new();
        t.push_jalali(&mut s, 0);
        assert_eq!(s, "۱۴۰۵/۰۹/۰۲");
    }

    #[test]
    fn edge_configs() {
        let t = Traffic::new(TrafficConfig {
            mailboxes: 1,
            bad_ratio: 0.0,
            duplicate_ratio: 0.0,
            start: start(),
            ..TrafficConfig::default()
        });
        for i in 0..200 {
            let g = t.record(i);
            assert_eq!(g.expect, Expect::Stored);
            assert!(decode(&g.payload).is_ok());
        }
        // All bad: conflicts find no valid original and fall back to valid records.
        let t = Traffic::new(TrafficConfig {
            bad_ratio: 1.0,
            start: start(),
            ..TrafficConfig::default()
        });
        for i in 0..500 {
            let g = t.record(i);
            assert_ne!(g.expect, Expect::Duplicate);
            assert_eq!(
                g.expect == Expect::Stored,
                decode(&g.payload).is_ok(),
                "record {i}"
            );
        }
        assert!(t.chunk(10, 5).is_empty());
    }
}
