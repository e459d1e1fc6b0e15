//! The traffic model shared by `karpoosheh demo` and `karpoosheh-loadtest`:
//! realistic notices from Iranian government agencies, as the bytes an
//! agency would put on its topic, each with the outcome the engine must
//! report for it.
//!
//! Record `i` is a pure function of `(seed, i)`: chunks can be generated in
//! parallel, and any record can be re-generated later to verify what the
//! engine did with it. (The per-record generator is [`SmallRng`], so the
//! bytes are reproducible for one build on one platform, which is what the
//! demo and the load test need.)
//!
//! What the model contains:
//! - eight agencies with realistic shares, notice kinds and life events, and
//!   Persian titles and bodies assembled from sentence pools, with amounts,
//!   Jalali dates, case and payment numbers in Persian digits;
//! - recipients drawn from a population of `mailboxes` IDs with valid check
//!   digits (85% natural persons, 15% legal entities; the top 200 companies
//!   receive 2% of all traffic), sometimes written in Persian digits or as
//!   `<id>@iran`;
//! - the judiciary's serializer escapes all non-ASCII as `\uXXXX` with
//!   Python's separators, like `json.dumps` with its defaults;
//! - a mix of deliberately bad records ([`Traffic::bad_mix`]), each with
//!   exactly one problem, and exact re-sends of earlier valid records.
//!
//! Persian text below writes the zero-width non-joiner (U+200C, as in
//! "می‌رساند") as `\u{200c}`.

use std::cell::RefCell;
use std::io;

use chrono::{DateTime, Utc};
use karpoosheh_schemas::{LifeEvent, MailboxId, NoticeKind, Reason};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

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
                let (jy, jm, jd) = gregorian_to_jalali(gy, gm, gd);
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

// ---- the envelope as written --------------------------------------------

/// A number, or (in bad records) the same number written as a string.
#[derive(Clone, Copy)]
enum Num {
    U(u64),
    S(&'static str),
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Num::U(n) => s.serialize_u64(n),
            Num::S(t) => s.serialize_str(t),
        }
    }
}

#[derive(Serialize, Clone, Copy)]
struct AttOut<'a> {
    name: &'a str,
    media_type: &'a str,
    size: Num,
    sha256: &'a str,
}

impl<'a> AttOut<'a> {
    const EMPTY: AttOut<'static> = AttOut {
        name: "",
        media_type: "",
        size: Num::U(0),
        sha256: "",
    };

    const FALLBACK: AttOut<'static> = AttOut {
        name: "پیوست.pdf",
        media_type: "application/pdf",
        size: Num::U(245_760),
        sha256: "5f2b3c0e6a1d9c4e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716051a2b3c4d5e",
    };
}

#[derive(Serialize)]
struct WireOut<'a> {
    schema_version: Num,
    agency: &'a str,
    reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<&'a [AttOut<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_access_level: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    life_event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_id: Option<&'a str>,
}

/// Writes JSON the way Python's `json.dumps` does with its defaults:
/// every non-ASCII character as `\uXXXX` (surrogate pairs above U+FFFF,
/// lowercase hex) and `", "` / `": "` separators.
pub(crate) struct PythonAscii;

impl serde_json::ser::Formatter for PythonAscii {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] < 0x80 {
                i += 1;
                continue;
            }
            if start < i {
                w.write_all(&bytes[start..i])?;
            }
            let ch = fragment[i..].chars().next().expect("a char starts here");
            let mut units = [0u16; 2];
            let mut buf = [0u8; 12];
            let mut n = 0;
            for &u in ch.encode_utf16(&mut units).iter() {
                buf[n] = b'\\';
                buf[n + 1] = b'u';
                buf[n + 2] = HEX[(u >> 12) as usize & 15];
                buf[n + 3] = HEX[(u >> 8) as usize & 15];
                buf[n + 4] = HEX[(u >> 4) as usize & 15];
                buf[n + 5] = HEX[u as usize & 15];
                n += 6;
            }
            w.write_all(&buf[..n])?;
            i += ch.len_utf8();
            start = i;
        }
        if start < bytes.len() {
            w.write_all(&bytes[start..])?;
        }
        Ok(())
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

// ---- bad records ---------------------------------------------------------

/// Bad-check-digit: one digit mistyped or two neighbours swapped, as a
/// clerk would; sometimes in Persian digits.
fn typo_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let good = id.to_string();
    let mut d = good.clone().into_bytes();
    let len = d.len();
    let mut found = false;
    for _ in 0..16 {
        d.copy_from_slice(good.as_bytes());
        if rng.random_bool(0.4) {
            let p = rng.random_range(0..len - 1);
            d.swap(p, p + 1);
        } else {
            let p = rng.random_range(0..len);
            d[p] = b'0' + (d[p] - b'0' + rng.random_range(1..10)) % 10;
        }
        if bad_check_digit(&d) {
            found = true;
            break;
        }
    }
    if !found {
        // The check digit itself: always caught, unless it makes the ID a
        // repeated digit.
        for delta in 1..10 {
            d.copy_from_slice(good.as_bytes());
            d[len - 1] = b'0' + (d[len - 1] - b'0' + delta) % 10;
            if bad_check_digit(&d) {
                break;
            }
        }
    }
    let s = std::str::from_utf8(&d).expect("digits");
    if rng.random_bool(0.2) {
        push_persian_digits(out, s);
    } else {
        out.push_str(s);
    }
}

fn bad_check_digit(d: &[u8]) -> bool {
    matches!(
        MailboxId::parse(std::str::from_utf8(d).unwrap_or("")),
        Err(karpoosheh_schemas::IdError::BadCheckDigit)
    )
}

/// Wrong length: a spreadsheet dropped the leading zeros of a national
/// code, or a digit was lost. (Always a natural person's 10-digit code, so
/// the result has 8 or 9 digits.)
fn short_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let s = id.to_string();
    let trimmed = s.trim_start_matches('0');
    if trimmed.len() < s.len() && trimmed.len() >= 7 {
        out.push_str(trimmed);
    } else {
        let p = rng.random_range(0..s.len());
        out.push_str(&s[..p]);
        out.push_str(&s[p + 1..]);
    }
}

/// Invalid character: the ID as printed on the card, with dashes or spaces.
fn formatted_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let s = id.to_string();
    let sep = if rng.random_bool(0.7) { '-' } else { ' ' };
    out.push_str(&s[..3]);
    out.push(sep);
    out.push_str(&s[3..s.len() - 1]);
    out.push(sep);
    out.push_str(&s[s.len() - 1..]);
}

/// Malformed JSON: a record cut short by a producer bug (at a character
/// boundary, so it stays UTF-8), a trailing comma from a hand-made
/// serializer, or two messages in one record.
fn malform(out: &mut Vec<u8>, rng: &mut SmallRng) {
    match rng.random::<f64>() {
        x if x < 0.6 => {
            let mut cut = rng.random_range(out.len() / 4..out.len() - 1);
            while cut > 1 && (out[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            out.truncate(cut);
        }
        x if x < 0.8 => {
            let last = out.len() - 1;
            out.insert(last, b',');
        }
        _ => {
            // No newline between them: records must stay one NDJSON line.
            out.extend_from_within(..);
        }
    }
}

/// Invalid UTF-8: a legacy system that writes Windows-1256 (Arabic).
fn to_windows_1256(text: &str, out: &mut Vec<u8>) {
    // U+0621..=U+064A; 0x3F ('?') where the code page has no character.
    const ARABIC: [u8; 42] = [
        0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
        0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD8, 0xD9, 0xDA, 0xDB, 0x3F, 0x3F, 0x3F, 0x3F,
        0x3F, 0xDC, 0xDD, 0xDE, 0xDF, 0xE1, 0xE3, 0xE4, 0xE5, 0xE6, 0xEC, 0xED,
    ];
    for ch in text.chars() {
        let b = match ch {
            c if c.is_ascii() => c as u8,
            '\u{0621}'..='\u{064A}' => ARABIC[ch as usize - 0x621],
            '\u{06F0}'..='\u{06F9}' => b'0' + (ch as u32 - 0x6F0) as u8,
            'پ' => 0x81,
            'چ' => 0x8D,
            'ژ' => 0x8E,
            'گ' => 0x90,
            'ک' => 0x98,
            'ی' => 0xED,
            '\u{200C}' => 0x9D,
            '،' => 0xA1,
            '؛' => 0xBA,
            '؟' => 0xBF,
            '«' => 0xAB,
            '»' => 0xBB,
            _ => b'?',
        };
        out.push(b);
    }
}

// ---- IDs -----------------------------------------------------------------

/// Issuing-office prefixes (the first three digits of a national code).
const PERSON_PREFIXES: [u16; 48] = [
    1, 2, 3, 4, 5, 6, 7, 8, 11, 20, 25, 37, 38, 44, 55, 63, 92, 93, 94, 127, 128, 129, 136, 137,
    138, 159, 175, 176, 228, 229, 230, 246, 257, 274, 287, 322, 323, 342, 360, 386, 412, 439, 447,
    469, 496, 520, 612, 638,
];

/// Population index -> national code: an issuing office and a scrambled
/// serial, so IDs look issued rather than sequential.
fn person_id(k: u64) -> MailboxId {
    let p = PERSON_PREFIXES.len() as u64;
    let q = k / p;
    let serial = ((q % 1_000_000) * 738_227 + 104_729) % 1_000_000;
    let prefix = (PERSON_PREFIXES[(k % p) as usize] as u64 + 11 * (q / 1_000_000)) % 1000;
    let mut body = prefix * 1_000_000 + serial;
    loop {
        if let Some(id) = MailboxId::person_from_body(body as u32) {
            return id;
        }
        body = (body + 1) % 1_000_000_000;
    }
}

/// Population index -> legal national ID: mostly older `10…` IDs (all of
/// the largest companies), a fifth newer `140…` ones.
fn legal_id(k: u64) -> MailboxId {
    let mut body = if k % 5 == 4 {
        1_400_000_000 + ((k / 5) % 10_000_000 * 7_321_547 + 1_234_567) % 10_000_000
    } else {
        let q = (k / 5) * 4 + k % 5;
        1_000_000_000 + ((q % 100_000_000) * 36_912_743 + 5_550_123) % 100_000_000
    };
    loop {
        if let Some(id) = MailboxId::legal_from_body(body) {
            return id;
        }
        body = (body + 1) % 10_000_000_000;
    }
}

// ---- small helpers -------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn cumulate(weights: impl Iterator<Item = f64>, out: &mut [f64]) {
    let w: Vec<f64> = weights.collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    for (o, x) in out.iter_mut().zip(w) {
        acc += x / total;
        *o = acc;
    }
    if let Some(last) = out.last_mut() {
        *last = 1.0;
    }
}

fn pick_cum(cum: &[f64], u: f64) -> usize {
    cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1)
}

fn pick_variant(variants: &'static [Variant], legal: bool, u: f64) -> &'static Variant {
    let ok = |v: &Variant| match v.to {
        To::Any => true,
        To::Person => !legal,
    };
    let total: f64 = variants.iter().filter(|v| ok(v)).map(|v| v.weight).sum();
    let mut x = u * total;
    for v in variants.iter().filter(|v| ok(v)) {
        if x < v.weight {
            return v;
        }
        x -= v.weight;
    }
    variants
        .iter()
        .rev()
        .find(|v| ok(v))
        .expect("every agency has a variant for anyone")
}

fn normal(rng: &mut SmallRng) -> f64 {
    let u1 = rng.random::<f64>().max(1e-12);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

fn push_ascii(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.push_str(std::str::from_utf8(&buf[start..]).expect("digits"));
}

const FA_DIGITS: [char; 10] = ['۰', '۱', '۲', '۳', '۴', '۵', '۶', '۷', '۸', '۹'];

/// `n` in Persian digits, zero-padded to `width`.
fn push_fa(out: &mut String, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut len = 0;
    let mut n = n;
    loop {
        buf[len] = (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while len < width.min(20) {
        buf[len] = 0;
        len += 1;
    }
    for k in (0..len).rev() {
        out.push(FA_DIGITS[buf[k] as usize]);
    }
}

/// An amount in Persian digits with the Arabic thousands separator:
/// ۱۲٬۵۰۰٬۰۰۰.
fn push_fa_grouped(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut len = 0;
    let mut n = n;
    loop {
        buf[len] = (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for k in (0..len).rev() {
        out.push(FA_DIGITS[buf[k] as usize]);
        if k > 0 && k % 3 == 0 {
            out.push('٬');
        }
    }
}

fn push_persian_digits(out: &mut String, ascii: &str) {
    for c in ascii.chars() {
        match c {
            '0'..='9' => out.push(FA_DIGITS[(c as u8 - b'0') as usize]),
            other => out.push(other),
        }
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (k, b) in bytes.iter().take(32).enumerate() {
        out[2 * k] = HEX[(b >> 4) as usize];
        out[2 * k + 1] = HEX[(b & 15) as usize];
    }
}

const TEHRAN_OFFSET_SECS: i64 = 3 * 3600 + 30 * 60;

/// RFC 3339 in UTC (`Z`) or Tehran time (`+03:30`), with microseconds if given.
fn push_rfc3339(out: &mut String, secs: i64, micros: Option<u32>, tehran: bool) {
    let local = if tehran {
        secs + TEHRAN_OFFSET_SECS
    } else {
        secs
    };
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let sod = local.rem_euclid(86_400) as u64;
    push_ascii(out, y as u64, 4);
    out.push('-');
    push_ascii(out, m as u64, 2);
    out.push('-');
    push_ascii(out, d as u64, 2);
    out.push('T');
    push_ascii(out, sod / 3600, 2);
    out.push(':');
    push_ascii(out, sod / 60 % 60, 2);
    out.push(':');
    push_ascii(out, sod % 60, 2);
    if let Some(us) = micros {
        out.push('.');
        push_ascii(out, us as u64, 6);
    }
    out.push_str(if tehran { "+03:30" } else { "Z" });
}

/// Days since 1970-01-01 -> proleptic Gregorian (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// Gregorian -> Jalali (Solar Hijri), the arithmetic 33-year-cycle
/// conversion used by Iranian software (jdf).
fn gregorian_to_jalali(gy: i64, gm: u32, gd: u32) -> (i64, u32, u32) {
    const G_D_M: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let gy2 = if gm > 2 { gy + 1 } else { gy };
    let mut days = 355_666 + 365 * gy + (gy2 + 3) / 4 - (gy2 + 99) / 100
        + (gy2 + 399) / 400
        + gd as i64
        + G_D_M[gm as usize - 1];
    let mut jy = -1595 + 33 * (days / 12_053);
    days %= 12_053;
    jy += 4 * (days / 1461);
    days %= 1461;
    if days > 365 {
        jy += (days - 1) / 365;
        days = (days - 1) % 365;
    }
    let (jm, jd) = if days < 186 {
        (1 + days / 31, 1 + days % 31)
    } else {
        (7 + (days - 186) / 30, 1 + (days - 186) % 30)
    };
    (jy, jm as u32, jd as u32)
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

const CORRECTIONS: [&str; 2] = [
    "اصلاحیه: مبلغ مندرج در نسخه قبلی این پیام با شماره مرجع {r} اصلاح گردید و این نسخه جایگزین آن است.",
    "این نسخه به دلیل اشتباه در مندرجات نسخه قبلی مجدداً ارسال می\u{200c}شود؛ ملاک عمل، مندرجات این نسخه است.",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    Compact,
    PythonAscii,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeStyle {
    Utc,
    Tehran,
    /// Python's `isoformat()` with Asia/Tehran: microseconds and +03:30.
    Python,
}

impl TimeStyle {
    fn tehran(self) -> bool {
        !matches!(self, TimeStyle::Utc)
    }
    fn micros(self) -> bool {
        matches!(self, TimeStyle::Python)
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Any,
    Person,
}

/// One kind of notice an agency sends: kind, life event, and the Persian
/// titles and opening sentences for it.
#[derive(Debug)]
struct Variant {
    weight: f64,
    kind: NoticeKind,
    life: LifeEvent,
    to: To,
    titles: &'static [&'static str],
    leads: &'static [&'static str],
}

#[derive(Debug)]
struct AgencySpec {
    id: &'static str,
    share: f64,
    /// Share of this agency's notices that go to legal entities.
    legal_share: f64,
    salutation: &'static str,
    salutation_legal: &'static str,
    signature: &'static str,
    variants: &'static [Variant],
    filler: &'static [&'static str],
    attachments: &'static [&'static str],
    /// Amount range in rials and rounding.
    amount: (u64, u64, u64),
    expiry_years: &'static [u8],
    batch_prob: f64,
    /// P(level 2), P(level 3).
    access: (f64, f64),
    json: JsonStyle,
    time: TimeStyle,
    /// Leaves out `attachments` when empty and `min_access_level` when 1.
    omit_defaults: bool,
}

const AGENCY_COUNT: usize = 8;
const MUNICIPALITY: usize = 6;

static AGENCY_SHARES: [(&str, f64); AGENCY_COUNT] = [
    ("tax", 0.28),
    ("social-security", 0.18),
    ("judiciary", 0.15),
    ("utilities", 0.20),
    ("civil-registry", 0.05),
    ("traffic-police", 0.08),
    ("municipality", 0.04),
    ("insurance", 0.02),
];

const HOURS: [&str; 10] = [
    "۸:۰۰",
    "۸:۳۰",
    "۹:۰۰",
    "۹:۳۰",
    "۱۰:۰۰",
    "۱۰:۳۰",
    "۱۱:۰۰",
    "۱۱:۳۰",
    "۱۲:۰۰",
    "۱۳:۰۰",
];

const MONTHS: [&str; 12] = [
    "فروردین",
    "اردیبهشت",
    "خرداد",
    "تیر",
    "مرداد",
    "شهریور",
    "مهر",
    "آبان",
    "آذر",
    "دی",
    "بهمن",
    "اسفند",
];

const SEASONS: [&str; 4] = ["بهار", "تابستان", "پاییز", "زمستان"];

const PLATE_LETTERS: [&str; 15] = [
    "ب", "ج", "د", "س", "ص", "ط", "ق", "ل", "م", "ن", "و", "هـ", "ی", "ع", "ت",
];

const VIOLATIONS: [&str; 8] = [
    "عبور از چراغ قرمز",
    "تجاوز از سرعت مجاز",
    "توقف در محل ممنوع",
    "عدم استفاده از کمربند ایمنی",
    "استفاده از تلفن همراه در حین رانندگی",
    "سبقت غیرمجاز",
    "ورود به محدوده طرح ترافیک بدون مجوز",
    "عدم رعایت حق تقدم عبور",
];

/// City, province, and a weight roughly following population.
const CITIES: [(&str, &str, f64); 31] = [
    ("تهران", "تهران", 16.0),
    ("مشهد", "خراسان رضوی", 7.0),
    ("اصفهان", "اصفهان", 6.0),
    ("شیراز", "فارس", 5.0),
    ("تبریز", "آذربایجان شرقی", 4.5),
    ("کرج", "البرز", 4.0),
    ("اهواز", "خوزستان", 4.5),
    ("قم", "قم", 1.5),
    ("کرمانشاه", "کرمانشاه", 2.0),
    ("رشت", "گیلان", 3.0),
    ("ارومیه", "آذربایجان غربی", 4.0),
    ("زاهدان", "سیستان و بلوچستان", 3.0),
    ("کرمان", "کرمان", 3.5),
    ("همدان", "همدان", 2.0),
    ("یزد", "یزد", 1.5),
    ("اردبیل", "اردبیل", 1.5),
    ("بندرعباس", "هرمزگان", 2.0),
    ("اراک", "مرکزی", 1.5),
    ("زنجان", "زنجان", 1.0),
    ("سنندج", "کردستان", 1.8),
    ("قزوین", "قزوین", 1.5),
    ("خرم\u{200c}آباد", "لرستان", 2.0),
    ("گرگان", "گلستان", 2.2),
    ("ساری", "مازندران", 3.5),
    ("بوشهر", "بوشهر", 1.3),
    ("بیرجند", "خراسان جنوبی", 0.9),
    ("سمنان", "سمنان", 0.8),
    ("ایلام", "ایلام", 0.7),
    ("یاسوج", "کهگیلویه و بویراحمد", 0.8),
    ("شهرکرد", "چهارمحال و بختیاری", 1.0),
    ("بجنورد", "خراسان شمالی", 1.0),
];

// Placeholders in titles and sentences: {a} amount, {c} 16-digit notice
// number, {n} 7-digit file number, {k} 13-digit payment ID, {b} branch,
// {m} a count (installments, years), {u} metered usage, {h} time of day,
// {f} traffic violation, {s} city, {v} its province, {t} issue date,
// {d} due date, {y} this Jalali year, {z} last year, {p} a recent month,
// {q} last season, {l} licence plate, {r} the agency's reference.

/// Sentences any agency may use.
const SHARED: &[&str] = &[
    "این پیام از طریق کارپوشه ملی ایرانیان ارسال شده و ابلاغ آن از طریق این سامانه، مطابق مصوبه شورای اجرایی فناوری اطلاعات، به منزله ابلاغ رسمی است.",
    "برای اطمینان از اصالت این سند، کد رهگیری آن را در سامانه استعلام اصالت اسناد کارپوشه ملی وارد نمایید.",
    "پاسخ به این پیام از طریق کارپوشه امکان\u{200c}پذیر نیست؛ لطفاً از مسیرهای ارتباطی اعلام\u{200c}شده استفاده فرمایید.",
    "حفظ محرمانگی اطلاعات شما برای ما اهمیت دارد؛ کارکنان این دستگاه هرگز رمز عبور یا کد تأیید شما را درخواست نمی\u{200c}کنند.",
    "از پرداخت وجه از طریق پیوندهای ارسال\u{200c}شده در پیامک\u{200c}های ناشناس خودداری نمایید و تنها از درگاه\u{200c}های رسمی استفاده کنید.",
    "تاریخ صدور: {t}",
    "شماره مرجع: {r}",
    "با سپاس از همکاری شما در گسترش خدمات دولت الکترونیک و کاهش مراجعات حضوری.",
    "در صورت نیاز به راهنمایی بیشتر، با مرکز تماس دستگاه مربوط یا سامانه ارتباط مردمی ۱۱۱ تماس حاصل فرمایید.",
    "نسخه چاپی این سند همراه با کد رهگیری، در کلیه ادارات و مراجع قانونی معتبر است.",
    "اطلاعات شخصی شما مطابق قانون انتشار و دسترسی آزاد به اطلاعات و مقررات حمایت از داده\u{200c}ها محافظت می\u{200c}شود.",
    "لطفاً پس از مطالعه، دریافت این پیام را در کارپوشه تأیید نمایید.",
    "این پیام به صورت سامانه\u{200c}ای تولید شده و فاقد امضای دستی است.",
];

const TAX_FILLER: &[&str] = &[
    "چنانچه به مبلغ مالیات مورد مطالبه اعتراض دارید، می\u{200c}توانید ظرف مهلت سی روز از تاریخ ابلاغ، اعتراض خود را به صورت کتبی یا از طریق درگاه ملی خدمات الکترونیک سازمان امور مالیاتی کشور ثبت نمایید.",
    "در صورت عدم پرداخت یا عدم اعتراض در مهلت مقرر، برگ تشخیص قطعی تلقی شده و طبق ماده ۲۱۰ قانون مالیات\u{200c}های مستقیم عملیات اجرایی وصول آغاز خواهد شد.",
    "مطابق ماده ۱۹۰ قانون مالیات\u{200c}های مستقیم، به ازای هر ماه تأخیر در پرداخت، جریمه\u{200c}ای معادل دو و نیم درصد مالیات متعلق محاسبه و اخذ خواهد شد.",
    "پرداخت مالیات صرفاً با شناسه پرداخت {k} و به حساب\u{200c}های اعلام\u{200c}شده سازمان امور مالیاتی کشور معتبر است و وجوه واریزی به هر حساب دیگر پذیرفته نمی\u{200c}شود.",
    "برای مشاهده جزئیات محاسبه مالیات، متن کامل برگ تشخیص و سوابق پرونده، به درگاه ملی خدمات الکترونیک سازمان امور مالیاتی کشور مراجعه فرمایید.",
    "مؤدیان محترم می\u{200c}توانند در صورت نیاز، درخواست تقسیط بدهی مالیاتی خود را حداکثر تا ۳۶ ماه از طریق همین درگاه ثبت نمایند.",
    "کد رهگیری این ابلاغیه {c} است؛ لطفاً در مکاتبات بعدی به آن استناد فرمایید.",
    "این ابلاغیه در اجرای ماده ۲۰۳ قانون مالیات\u{200c}های مستقیم صادر شده و ابلاغ الکترونیکی آن در حکم ابلاغ قانونی است.",
    "اطلاعات مندرج در این برگ بر اساس اسناد و مدارک موجود در پرونده مالیاتی و اطلاعات واصله از مراجع ثالث موضوع ماده ۱۶۹ مکرر قانون تنظیم شده است.",
    "در صورتی که پیش از این نسبت به پرداخت بدهی اقدام نموده\u{200c}اید، این پیام را نادیده بگیرید.",
    "اداره امور مالیاتی شهرستان {s} همه روزه به جز روزهای تعطیل از ساعت ۸ تا ۱۴ پاسخگوی مراجعان است.",
    "مالیات بر ارزش افزوده دوره {q} بر اساس صورتحساب\u{200c}های الکترونیکی ثبت\u{200c}شده در سامانه مؤدیان محاسبه شده است.",
    "مرکز تماس سازمان امور مالیاتی کشور با شماره ۱۵۲۶ آماده پاسخگویی به پرسش\u{200c}های شما است.",
];

const TAX_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.22,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &[
            "ابلاغ برگ تشخیص مالیات عملکرد سال {z}",
            "ابلاغ برگ تشخیص مالیات بر درآمد مشاغل سال {z}",
            "برگ تشخیص مالیات - پرونده مالیاتی {n}",
        ],
        leads: &[
            "بدینوسیله به اطلاع می\u{200c}رساند برگ تشخیص مالیات عملکرد سال {z} به شماره {c} و به مبلغ {a} ریال در تاریخ {t} صادر شده و از طریق کارپوشه ملی به شما ابلاغ می\u{200c}گردد.",
            "پیرو رسیدگی به اظهارنامه مالیاتی عملکرد سال {z}، مالیات متعلق به مبلغ {a} ریال تشخیص داده شد و برگ تشخیص آن به شماره {c} به پیوست ابلاغ می\u{200c}شود.",
        ],
    },
    Variant {
        weight: 0.13,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &[
            "ابلاغ برگ قطعی مالیات بر ارزش افزوده دوره {q}",
            "اخطاریه رفع نقص اظهارنامه ارزش افزوده دوره {q}",
        ],
        leads: &[
            "به استناد قانون مالیات بر ارزش افزوده، برگ قطعی مالیات دوره {q} به مبلغ {a} ریال صادر شده و مهلت پرداخت آن تا تاریخ {d} است.",
            "در رسیدگی به اظهارنامه مالیات بر ارزش افزوده دوره {q} مغایرت\u{200c}هایی با صورتحساب\u{200c}های الکترونیکی ثبت\u{200c}شده در سامانه مؤدیان مشاهده شد که باید تا تاریخ {d} نسبت به رفع آن اقدام نمایید.",
        ],
    },
    Variant {
        weight: 0.25,
        kind: NoticeKind::Bill,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &[
            "اخطار پرداخت بدهی مالیاتی به مبلغ {a} ریال",
            "صورتحساب مالیات بر درآمد اجاره املاک سال {z}",
            "اعلام بدهی قطعی مالیاتی - شناسه پرداخت {k}",
        ],
        leads: &[
            "مانده بدهی قطعی شما تا تاریخ {t} مبلغ {a} ریال است؛ خواهشمند است حداکثر تا تاریخ {d} با استفاده از شناسه پرداخت {k} نسبت به تسویه آن اقدام فرمایید.",
            "صورتحساب مالیات بر درآمد اجاره املاک سال {z} به مبلغ {a} ریال صادر شد و پرداخت آن از طریق درگاه خدمات الکترونیک سازمان امور مالیاتی با شناسه پرداخت {k} امکان\u{200c}پذیر است.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &[
            "یادآوری مهلت تسلیم اظهارنامه مالیاتی عملکرد سال {z}",
            "اطلاعیه بخشودگی جرائم مالیاتی تا تاریخ {d}",
            "اطلاعیه ثبت\u{200c}نام در سامانه مؤدیان و صدور صورتحساب الکترونیکی",
        ],
        leads: &[
            "به اطلاع می\u{200c}رساند مهلت تسلیم اظهارنامه مالیاتی عملکرد سال {z} تا تاریخ {d} است و اظهارنامه\u{200c}هایی که پس از این تاریخ تسلیم شوند مشمول جرائم قانونی خواهند بود.",
            "در اجرای ماده ۱۹۱ قانون مالیات\u{200c}های مستقیم، مؤدیانی که تا تاریخ {d} اصل بدهی قطعی خود را پرداخت نمایند از بخشودگی جرائم قابل بخشش برخوردار خواهند شد.",
            "بر اساس قانون پایانه\u{200c}های فروشگاهی و سامانه مؤدیان، کلیه فعالان اقتصادی مکلف\u{200c}اند تا تاریخ {d} نسبت به ثبت\u{200c}نام و دریافت شناسه یکتای حافظه مالیاتی اقدام نمایند.",
        ],
    },
    Variant {
        weight: 0.12,
        kind: NoticeKind::Letter,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &[
            "دعوت به حضور در اداره امور مالیاتی شهرستان {s}",
            "درخواست ارائه اسناد و مدارک - پرونده مالیاتی {n}",
            "دعوت به جلسه هیئت حل اختلاف مالیاتی شعبه {b}",
        ],
        leads: &[
            "خواهشمند است در تاریخ {d} ساعت {h} با همراه داشتن دفاتر قانونی و اسناد و مدارک مربوط به عملکرد سال {z} به اداره امور مالیاتی شهرستان {s} مراجعه فرمایید.",
            "جلسه رسیدگی هیئت حل اختلاف مالیاتی شعبه {b} در خصوص اعتراض شما به برگ تشخیص شماره {c} در تاریخ {d} ساعت {h} تشکیل می\u{200c}شود و حضور شما یا وکیل قانونی\u{200c}تان در جلسه بلامانع است.",
        ],
    },
    Variant {
        weight: 0.06,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &["نتیجه رسیدگی به درخواست تقسیط بدهی مالیاتی", "نتیجه رسیدگی به اعتراض - پرونده مالیاتی {n}"],
        leads: &[
            "درخواست تقسیط بدهی مالیاتی شما به شماره {n} مورد موافقت قرار گرفت و بدهی به مبلغ {a} ریال در {m} قسط ماهانه قابل پرداخت است.",
            "اعتراض شما به برگ تشخیص شماره {c} بررسی شد و مالیات متعلق پس از رسیدگی به مبلغ {a} ریال تعدیل گردید.",
        ],
    },
    Variant {
        weight: 0.02,
        kind: NoticeKind::Certificate,
        life: LifeEvent::Tax,
        to: To::Any,
        titles: &["گواهی مفاصاحساب مالیاتی شماره {n}"],
        leads: &[
            "گواهی مفاصاحساب مالیاتی شما موضوع ماده ۱۸۶ قانون مالیات\u{200c}های مستقیم به شماره {n} در تاریخ {t} صادر گردید و تا تاریخ {d} معتبر است.",
        ],
    },
];

const SOCIAL_FILLER: &[&str] = &[
    "برای مشاهده سوابق بیمه\u{200c}ای و جزئیات پرداخت\u{200c}ها به سامانه خدمات غیرحضوری تأمین اجتماعی مراجعه نمایید.",
    "چنانچه به مبلغ محاسبه\u{200c}شده اعتراض دارید، می\u{200c}توانید ظرف بیست روز از تاریخ ابلاغ، اعتراض خود را به هیئت بدوی تشخیص مطالبات تسلیم نمایید.",
    "مطابق ماده ۴۹ قانون تأمین اجتماعی، در صورت تأخیر در پرداخت حق بیمه، جریمه تأخیر به مأخذ دو درصد به ازای هر ماه محاسبه خواهد شد.",
    "شعبه {b} سازمان تأمین اجتماعی شهر {s} همه روزه به جز ایام تعطیل از ساعت ۷:۳۰ تا ۱۳:۳۰ آماده ارائه خدمات به شما است.",
    "مرکز ارتباط مردمی سازمان تأمین اجتماعی با شماره ۱۴۲۰ پاسخگوی پرسش\u{200c}های شما است.",
    "لطفاً از مراجعه حضوری غیرضروری خودداری نموده و درخواست\u{200c}های خود را از طریق سامانه خدمات غیرحضوری ثبت فرمایید.",
    "تمدید اعتبار دفترچه درمانی به صورت خودکار و بر اساس پرداخت حق بیمه انجام می\u{200c}شود و نیازی به مراجعه حضوری نیست.",
    "سابقه پرداخت حق بیمه ثبت\u{200c}شده برای شما تا تاریخ {t} معادل {m} سال است.",
    "کد رهگیری این مکاتبه {c} است.",
    "عدم پرداخت بدهی در مهلت مقرر موجب توقف صدور مفاصاحساب و اقدامات اجرایی از طریق واحد اجرای احکام سازمان خواهد شد.",
    "حفظ و نگهداری این پیام تا پایان مهلت اعتراض توصیه می\u{200c}شود.",
];

const SOCIAL_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.22,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::Retirement,
        to: To::Person,
        titles: &["فیش مستمری بازنشستگی {p}", "حکم برقراری مستمری بازنشستگی"],
        leads: &[
            "فیش مستمری ماه {p} شما صادر شد. خالص پرداختی این ماه مبلغ {a} ریال است که به حساب معرفی\u{200c}شده نزد بانک عامل واریز گردیده است.",
            "درخواست شما به شماره {n} برای برقراری مستمری بازنشستگی بررسی شد و با توجه به {m} سال سابقه پرداخت حق بیمه، مستمری شما از تاریخ {d} برقرار می\u{200c}گردد.",
        ],
    },
    Variant {
        weight: 0.10,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::SocialSecurity,
        to: To::Person,
        titles: &["سوابق بیمه\u{200c}ای شما تا پایان {p}", "نتیجه درخواست ادغام سوابق بیمه\u{200c}ای"],
        leads: &[
            "سوابق پرداخت حق بیمه شما تا پایان {p} معادل {m} سال و با آخرین دستمزد مشمول کسر حق بیمه به مبلغ {a} ریال در سامانه ثبت شده است.",
            "درخواست ادغام سوابق بیمه\u{200c}ای شما به شماره {n} بررسی و سوابق مربوط به کارگاه\u{200c}های قبلی در پرونده شما منظور گردید.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Retirement,
        to: To::Person,
        titles: &["اطلاعیه افزایش مستمری بازنشستگان در سال {y}", "اطلاعیه واریز عیدی مستمری\u{200c}بگیران"],
        leads: &[
            "در اجرای مصوبه هیئت وزیران، مستمری شما از ابتدای فروردین ماه سال {y} افزایش یافته و مابه\u{200c}التفاوت آن تا تاریخ {d} به حساب شما واریز خواهد شد.",
            "عیدی مستمری\u{200c}بگیران سال {y} به مبلغ {a} ریال همراه با مستمری ماه {p} به حساب شما واریز خواهد شد.",
        ],
    },
    Variant {
        weight: 0.06,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Health,
        to: To::Person,
        titles: &["یادآوری تمدید اعتبار دفترچه درمانی تأمین اجتماعی"],
        leads: &[
            "اعتبار دفترچه درمانی شما و افراد تحت تکفل بر اساس آخرین لیست حق بیمه تا تاریخ {d} تمدید شد و نسخه\u{200c}های الکترونیک در تمامی مراکز طرف قرارداد قابل ارائه است.",
        ],
    },
    Variant {
        weight: 0.15,
        kind: NoticeKind::Bill,
        life: LifeEvent::SocialSecurity,
        to: To::Any,
        titles: &["اعلام بدهی حق بیمه کارگاه شماره {n}", "صورتحساب حق بیمه مشاغل آزاد {p}"],
        leads: &[
            "بر اساس لیست\u{200c}های ارسالی و گزارش بازرسی، بدهی حق بیمه کارگاه شماره {n} تا پایان {p} مبلغ {a} ریال محاسبه شده است که باید تا تاریخ {d} پرداخت گردد.",
            "حق بیمه ماه {p} شما در قرارداد بیمه مشاغل آزاد به مبلغ {a} ریال محاسبه شده و مهلت پرداخت آن تا تاریخ {d} است.",
        ],
    },
    Variant {
        weight: 0.15,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::SocialSecurity,
        to: To::Any,
        titles: &["ابلاغ برگ اجرایی مطالبات - کارگاه شماره {n}", "ابلاغ رأی هیئت بدوی تشخیص مطالبات"],
        leads: &[
            "به استناد ماده ۵۰ قانون تأمین اجتماعی، برگ اجرایی به مبلغ {a} ریال بابت حق بیمه و جرائم متعلقه کارگاه شماره {n} صادر و بدینوسیله ابلاغ می\u{200c}گردد.",
            "رأی هیئت بدوی تشخیص مطالبات موضوع ماده ۴۲ قانون تأمین اجتماعی در خصوص کارگاه شماره {n} صادر شد و بدهی قطعی به مبلغ {a} ریال تعیین گردید.",
        ],
    },
    Variant {
        weight: 0.12,
        kind: NoticeKind::Letter,
        life: LifeEvent::Health,
        to: To::Person,
        titles: &["دعوت به معاینه در کمیسیون پزشکی استان {v}", "پاسخ به درخواست غرامت دستمزد ایام بیماری"],
        leads: &[
            "خواهشمند است در تاریخ {d} ساعت {h} با همراه داشتن اصل مدارک پزشکی و کارت شناسایی معتبر در محل کمیسیون پزشکی استان {v} حاضر شوید.",
            "درخواست شما به شماره {n} برای دریافت غرامت دستمزد ایام بیماری بررسی و مبلغ {a} ریال به حساب شما واریز گردید.",
        ],
    },
];

const JUDICIARY_FILLER: &[&str] = &[
    "مطابق ماده ۱۷۵ قانون آیین دادرسی کیفری و آیین\u{200c}نامه نحوه استفاده از سامانه\u{200c}های رایانه\u{200c}ای یا مخابراتی، ابلاغ الکترونیکی اوراق قضایی به منزله ابلاغ قانونی است.",
    "عدم حضور شما مانع از رسیدگی و اتخاذ تصمیم مقتضی از سوی مرجع قضایی نخواهد بود.",
    "برای مشاهده متن کامل اوراق قضایی و پیوست\u{200c}ها، با کد ملی و رمز شخصی خود به سامانه ابلاغ الکترونیک قضایی (ثنا) مراجعه نمایید.",
    "مهلت تجدیدنظرخواهی نسبت به دادنامه برای اشخاص مقیم ایران بیست روز از تاریخ ابلاغ واقعی است.",
    "در صورت نیاز به مشاوره حقوقی می\u{200c}توانید با مرکز مشاوره قوه قضاییه به شماره ۱۲۹ تماس بگیرید.",
    "همراه داشتن اصل کارت ملی و این ابلاغیه هنگام مراجعه به شعبه الزامی است.",
    "شماره بایگانی شعبه: {n}؛ شماره ابلاغیه: {c}.",
    "چنانچه وکیل دارید، مراتب را به اطلاع وکیل خود برسانید تا نسبت به ثبت وکالتنامه در سامانه اقدام نماید.",
    "این ابلاغیه به صورت سامانه\u{200c}ای صادر شده و امضای الکترونیکی آن از طریق سامانه ثنا قابل استعلام است.",
    "در صورت عدم پرداخت محکوم\u{200c}به در مهلت مقرر، عملیات اجرایی از جمله توقیف اموال وفق قانون نحوه اجرای محکومیت\u{200c}های مالی ادامه خواهد یافت.",
    "نشانی مرجع قضایی: {s}، مجتمع قضایی شهید بهشتی، طبقه دوم، شعبه {b}.",
    "لوایح و مدارک خود را حداکثر تا یک هفته پیش از وقت رسیدگی از طریق دفاتر خدمات الکترونیک قضایی ارسال نمایید.",
];

const JUDICIARY_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.35,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &[
            "ابلاغیه وقت رسیدگی - پرونده کلاسه {n}",
            "ابلاغیه شعبه {b} دادگاه عمومی حقوقی {s}",
            "اخطاریه دادگستری - شماره ابلاغیه {c}",
        ],
        leads: &[
            "نظر به اینکه در پرونده کلاسه {n} مطروحه در شعبه {b} دادگاه عمومی حقوقی شهرستان {s} وقت رسیدگی برای تاریخ {d} ساعت {h} تعیین شده است، بدینوسیله به شما ابلاغ می\u{200c}گردد که در موعد مقرر در دادگاه حاضر شوید.",
            "به موجب این ابلاغیه، نسخه دوم دادخواست و ضمائم آن در پرونده کلاسه {n} به شما ابلاغ می\u{200c}شود و جلسه دادرسی در تاریخ {d} ساعت {h} برگزار خواهد شد.",
        ],
    },
    Variant {
        weight: 0.25,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["ابلاغ دادنامه شماره {c}", "ابلاغ رأی شعبه {b} دادگاه تجدیدنظر استان {v}"],
        leads: &[
            "دادنامه شماره {c} صادره از شعبه {b} دادگاه عمومی حقوقی شهرستان {s} در پرونده کلاسه {n} به پیوست ابلاغ می\u{200c}گردد.",
            "رأی قطعی شعبه {b} دادگاه تجدیدنظر استان {v} در پرونده کلاسه {n} صادر شد و متن کامل دادنامه در سامانه ابلاغ الکترونیک قضایی قابل مشاهده است.",
        ],
    },
    Variant {
        weight: 0.13,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["ابلاغ اجراییه - پرونده اجرایی {n}", "اخطار اجرای احکام مدنی شهرستان {s}"],
        leads: &[
            "به موجب اجراییه صادره در پرونده کلاسه {n}، محکوم\u{200c}علیه مکلف است ظرف ده روز از تاریخ ابلاغ، مبلغ {a} ریال بابت محکوم\u{200c}به و هزینه\u{200c}های دادرسی را پرداخت نماید.",
        ],
    },
    Variant {
        weight: 0.12,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Other,
        to: To::Person,
        titles: &["احضاریه دادسرای عمومی و انقلاب شهرستان {s}", "احضاریه شعبه {b} بازپرسی"],
        leads: &[
            "شما به عنوان مطلع در پرونده کلاسه {n} احضار می\u{200c}شوید تا در تاریخ {d} ساعت {h} در شعبه {b} بازپرسی دادسرای عمومی و انقلاب شهرستان {s} حاضر شوید.",
        ],
    },
    Variant {
        weight: 0.05,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::PropertyRegistration,
        to: To::Any,
        titles: &["ابلاغیه پرونده الزام به تنظیم سند رسمی - کلاسه {n}"],
        leads: &[
            "در پرونده کلاسه {n} با موضوع الزام به تنظیم سند رسمی انتقال ملک واقع در شهر {s}، جلسه رسیدگی در تاریخ {d} ساعت {h} در شعبه {b} دادگاه عمومی حقوقی تشکیل خواهد شد.",
        ],
    },
    Variant {
        weight: 0.07,
        kind: NoticeKind::Letter,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["اطلاع\u{200c}رسانی ثبت دادخواست به طرفیت شما", "ثبت درخواست در دفتر خدمات الکترونیک قضایی"],
        leads: &[
            "دادخواستی به طرفیت شما در تاریخ {t} در دفتر خدمات الکترونیک قضایی ثبت و به شعبه {b} دادگاه عمومی حقوقی شهرستان {s} ارجاع شد.",
            "درخواست شما به شماره پیگیری {c} در دفتر خدمات الکترونیک قضایی ثبت و برای رسیدگی به مرجع قضایی صالح ارسال شد.",
        ],
    },
    Variant {
        weight: 0.03,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["اطلاعیه مرکز آمار و فناوری اطلاعات قوه قضاییه"],
        leads: &[
            "به اطلاع می\u{200c}رساند کلیه اوراق قضایی از این پس صرفاً از طریق سامانه ابلاغ الکترونیک قضایی و کارپوشه ملی ابلاغ می\u{200c}گردد و ابلاغ کاغذی انجام نخواهد شد.",
        ],
    },
];

const UTILITIES_FILLER: &[&str] = &[
    "پرداخت قبض از طریق درگاه\u{200c}های بانکی، اپلیکیشن\u{200c}های پرداخت و کد دستوری *۷۲۰# با وارد کردن شناسه قبض و شناسه پرداخت امکان\u{200c}پذیر است.",
    "شناسه پرداخت: {k}",
    "مصرف شما در این دوره نسبت به دوره مشابه سال قبل افزایش داشته است؛ با رعایت الگوی مصرف از پرداخت مبالغ پلکانی جلوگیری نمایید.",
    "در صورت مغایرت در رقم کارکرد کنتور، می\u{200c}توانید از طریق سامانه ۱۲۱ یا مراجعه به امور مشترکین درخواست بازدید مجدد ثبت نمایید.",
    "برای دریافت قبض الکترونیک و حذف قبض کاغذی، شماره همراه خود را در سامانه مشترکین ثبت کنید.",
    "مبلغ این صورتحساب شامل مالیات بر ارزش افزوده، عوارض قانونی و آبونمان مطابق تعرفه\u{200c}های مصوب است.",
    "مشترکان کم\u{200c}مصرف مشمول تخفیف و پاداش صرفه\u{200c}جویی خواهند شد.",
    "تاریخ قرائت بعدی کنتور حدوداً {d} است؛ لطفاً دسترسی مأمور قرائت به کنتور را فراهم فرمایید.",
    "در مواقع اضطراری با شماره ۱۲۱ (برق)، ۱۹۴ (گاز) یا ۱۲۲ (آب و فاضلاب) تماس بگیرید.",
    "شماره اشتراک: {n} - شهر {s}",
    "عدم پرداخت صورتحساب تا دو دوره متوالی موجب قطع انشعاب مطابق آیین\u{200c}نامه تکمیلی تعرفه\u{200c}ها خواهد شد.",
];

const UTILITIES_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.34,
        kind: NoticeKind::Bill,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["صورتحساب برق دوره {p}", "قبض برق {p} - شناسه قبض {k}"],
        leads: &[
            "صورتحساب برق شما برای دوره منتهی به {t} با مصرف {u} کیلووات\u{200c}ساعت به مبلغ {a} ریال صادر شد. شناسه قبض: {k} - مهلت پرداخت: {d}",
            "مبلغ قابل پرداخت قبض برق دوره {p} با احتساب بهای انرژی، آبونمان و مالیات بر ارزش افزوده {a} ریال است که باید حداکثر تا تاریخ {d} پرداخت شود.",
        ],
    },
    Variant {
        weight: 0.29,
        kind: NoticeKind::Bill,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["قبض گاز مشترک - دوره {p}", "صورتحساب گاز طبیعی دوره {p}"],
        leads: &[
            "صورتحساب گاز شما برای دوره منتهی به {t} با مصرف {u} متر مکعب به مبلغ {a} ریال صادر شد. مهلت پرداخت تا تاریخ {d} است.",
        ],
    },
    Variant {
        weight: 0.22,
        kind: NoticeKind::Bill,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["صورتحساب آب و فاضلاب {p}", "قبض آب - شماره اشتراک {n}"],
        leads: &[
            "صورتحساب آب و فاضلاب اشتراک شماره {n} برای دوره منتهی به {t} با مصرف {u} متر مکعب به مبلغ {a} ریال صادر گردید. شناسه قبض: {k}",
        ],
    },
    Variant {
        weight: 0.10,
        kind: NoticeKind::Announcement,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["اطلاعیه خاموشی برنامه\u{200c}ریزی\u{200c}شده در شهر {s}", "توصیه\u{200c}های مدیریت مصرف گاز در فصل سرما"],
        leads: &[
            "به اطلاع می\u{200c}رساند به منظور اجرای عملیات تعمیرات و بهینه\u{200c}سازی شبکه، برق منطقه شما در تاریخ {d} از ساعت {h} به مدت دو ساعت قطع خواهد بود.",
            "با توجه به کاهش دمای هوا، خواهشمند است دمای محیط منزل را حداکثر ۱۸ درجه تنظیم نموده و از سالم بودن دودکش وسایل گازسوز اطمینان حاصل فرمایید.",
        ],
    },
    Variant {
        weight: 0.05,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["اخطار قطع انشعاب به علت بدهی معوق", "اخطاریه بدهی معوق اشتراک {n}"],
        leads: &[
            "بدهی معوق انشعاب شما به مبلغ {a} ریال است؛ در صورت عدم پرداخت تا تاریخ {d}، انشعاب بدون اطلاع قبلی قطع و هزینه وصل مجدد بر عهده مشترک خواهد بود.",
        ],
    },
];

const CIVIL_FILLER: &[&str] = &[
    "برای دریافت شناسنامه، همراه داشتن اصل مدارک هویتی و رسید پیگیری الزامی است.",
    "این سند بر اساس اطلاعات ثبت\u{200c}شده در پایگاه اطلاعات جمعیتی کشور صادر شده و اصالت آن از طریق سامانه استعلام ثبت احوال قابل بررسی است.",
    "دفتر پیشخوان دولت منتخب شما در شهر {s} می\u{200c}تواند مراحل صدور و تحویل را انجام دهد.",
    "مطابق قانون ثبت احوال، ثبت ولادت باید ظرف پانزده روز از تاریخ تولد انجام شود.",
    "کد پیگیری درخواست: {c}",
    "اداره ثبت احوال شهرستان {s} شنبه تا چهارشنبه از ساعت ۷:۳۰ تا ۱۴:۳۰ پاسخگوی مراجعان است.",
    "لطفاً در صورت مشاهده هرگونه مغایرت در مندرجات، حداکثر ظرف یک ماه مراتب را به اداره ثبت احوال محل اعلام فرمایید.",
    "هزینه صدور این سند به مبلغ {a} ریال از طریق درگاه پرداخت الکترونیک دریافت شده است.",
];

const CIVIL_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.20,
        kind: NoticeKind::Certificate,
        life: LifeEvent::Birth,
        to: To::Any,
        titles: &["صدور شناسنامه نوزاد - شماره سریال {n}", "ثبت ولادت و صدور شناسنامه نوزاد"],
        leads: &[
            "به اطلاع می\u{200c}رساند ولادت فرزند شما در تاریخ {t} در اداره ثبت احوال شهرستان {s} ثبت و شناسنامه با شماره سریال {n} صادر گردید.",
        ],
    },
    Variant {
        weight: 0.14,
        kind: NoticeKind::Certificate,
        life: LifeEvent::Marriage,
        to: To::Any,
        titles: &["ثبت واقعه ازدواج در اسناد سجلی", "گواهی ثبت ازدواج - سند شماره {n}"],
        leads: &[
            "واقعه ازدواج شما بر اساس سند رسمی ازدواج شماره {n} تنظیم\u{200c}شده در دفترخانه رسمی ازدواج شماره {b} شهرستان {s} در اسناد سجلی ثبت شد.",
        ],
    },
    Variant {
        weight: 0.08,
        kind: NoticeKind::Certificate,
        life: LifeEvent::Death,
        to: To::Any,
        titles: &["گواهی ثبت واقعه فوت شماره {n}"],
        leads: &[
            "ضمن عرض تسلیت، به اطلاع می\u{200c}رساند واقعه فوت یکی از بستگان درجه یک شما در تاریخ {t} در اداره ثبت احوال شهرستان {s} ثبت و گواهی فوت به شماره {n} صادر گردید.",
        ],
    },
    Variant {
        weight: 0.13,
        kind: NoticeKind::Certificate,
        life: LifeEvent::DocumentsAndCertificates,
        to: To::Any,
        titles: &["صدور کارت هوشمند ملی شما", "صدور المثنی شناسنامه - شماره سریال {n}"],
        leads: &[
            "کارت هوشمند ملی شما صادر و به دفتر پیشخوان منتخب در شهر {s} ارسال شد؛ لطفاً با همراه داشتن رسید پیگیری شماره {n} جهت تحویل مراجعه فرمایید.",
            "المثنی شناسنامه شما با شماره سریال جدید {n} صادر شد و شناسنامه قبلی از درجه اعتبار ساقط است.",
        ],
    },
    Variant {
        weight: 0.30,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::DocumentsAndCertificates,
        to: To::Any,
        titles: &["نتیجه درخواست اصلاح مندرجات شناسنامه", "آماده تحویل بودن کارت هوشمند ملی"],
        leads: &[
            "درخواست شما به شماره {n} برای اصلاح تاریخ تولد مندرج در شناسنامه در هیئت حل اختلاف ثبت احوال بررسی و با آن موافقت شد.",
            "کارت هوشمند ملی شما آماده تحویل است؛ لطفاً تا تاریخ {d} با همراه داشتن شناسنامه و رسید پیگیری شماره {n} به اداره ثبت احوال شهرستان {s} مراجعه فرمایید.",
        ],
    },
    Variant {
        weight: 0.15,
        kind: NoticeKind::Announcement,
        life: LifeEvent::DocumentsAndCertificates,
        to: To::Any,
        titles: &["یادآوری تعویض شناسنامه\u{200c}های قدیمی فاقد عکس", "اطلاعیه تمدید اعتبار کارت ملی قدیمی"],
        leads: &[
            "از تاریخ {d}، شناسنامه\u{200c}های فاقد عکس برای افراد بالای پانزده سال در ادارات و بانک\u{200c}ها معتبر نخواهد بود؛ لطفاً نسبت به تعویض آن اقدام فرمایید.",
        ],
    },
];

const TRAFFIC_FILLER: &[&str] = &[
    "مطابق قانون رسیدگی به تخلفات رانندگی، در صورت عدم پرداخت جریمه ظرف دو ماه از تاریخ ابلاغ، مبلغ آن دو برابر خواهد شد.",
    "در صورت اعتراض به تخلف ثبت\u{200c}شده، می\u{200c}توانید ظرف ده روز از تاریخ ابلاغ از طریق سامانه راهور ۱۲۰ یا دفاتر پلیس +۱۰ اعتراض خود را ثبت نمایید.",
    "تصویر تخلف ثبت\u{200c}شده با وارد کردن شماره سریال قبض در سامانه خدمات الکترونیک پلیس راهور قابل مشاهده است.",
    "پرداخت جریمه از طریق اپلیکیشن\u{200c}های پرداخت، درگاه خدمات الکترونیک پلیس راهور یا بانک\u{200c}های عامل با شناسه پرداخت {k} امکان\u{200c}پذیر است.",
    "نمره منفی این تخلف در پرونده گواهینامه رانندگی شما ثبت شده است.",
    "رعایت قوانین و مقررات راهنمایی و رانندگی، ضامن حفظ جان شما و سایر هموطنان است.",
    "شماره سریال قبض جریمه: {c}",
    "در صورت انتقال مالکیت خودرو پیش از تاریخ تخلف، با ارائه مدارک به مراکز تعویض پلاک مراتب را اعلام نمایید.",
];

const TRAFFIC_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.60,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["ابلاغ قبض جریمه تخلف رانندگی - پلاک {l}", "ابلاغیه تخلف رانندگی: {f}"],
        leads: &[
            "بدینوسیله تخلف ثبت\u{200c}شده توسط دوربین نظارت تصویری برای خودروی به شماره پلاک {l} در تاریخ {t} ساعت {h} در شهر {s} با عنوان «{f}» به مبلغ {a} ریال به شما ابلاغ می\u{200c}گردد.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::Bill,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["اعلام مجموع جرائم پرداخت\u{200c}نشده خودرو پلاک {l}"],
        leads: &[
            "مجموع جرائم پرداخت\u{200c}نشده خودروی شما به شماره پلاک {l} تا تاریخ {t} مبلغ {a} ریال است؛ پرداخت آن پیش از نقل و انتقال یا تعویض پلاک الزامی است.",
        ],
    },
    Variant {
        weight: 0.15,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::DocumentsAndCertificates,
        to: To::Person,
        titles: &["نتیجه درخواست صدور گواهینامه رانندگی", "نتیجه درخواست تعویض پلاک خودرو"],
        leads: &[
            "درخواست شما برای صدور گواهینامه رانندگی پایه دوم با شماره پرونده {n} تأیید شد و گواهینامه از طریق پست به نشانی ثبت\u{200c}شده ارسال خواهد شد.",
            "درخواست تعویض پلاک خودروی شما به شماره پرونده {n} انجام شد و پلاک جدید {l} به نام شما ثبت گردید.",
        ],
    },
    Variant {
        weight: 0.05,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Other,
        to: To::Any,
        titles: &["اطلاعیه محدودیت\u{200c}های ترافیکی محورهای استان {v}"],
        leads: &[
            "به اطلاع می\u{200c}رساند از تاریخ {d} محدودیت\u{200c}های ترافیکی در محورهای مواصلاتی استان {v} اعمال خواهد شد؛ لطفاً پیش از سفر از وضعیت راه\u{200c}ها مطلع شوید.",
        ],
    },
];

const MUNICIPALITY_FILLER: &[&str] = &[
    "پرداخت عوارض از طریق سامانه شهر هوشمند یا شعب بانک شهر امکان\u{200c}پذیر است.",
    "مطابق ماده ۷۷ قانون شهرداری\u{200c}ها، رفع هرگونه اختلاف در مورد عوارض به کمیسیون مقرر در این ماده ارجاع می\u{200c}شود.",
    "برای اطلاع از جزئیات پرونده به سامانه ۱۳۷ یا دفاتر خدمات الکترونیک شهر مراجعه فرمایید.",
    "صدور پایان\u{200c}کار و گواهی عدم خلاف منوط به تسویه کامل عوارض و جرائم است.",
    "منطقه {b} شهرداری {s} - شماره پرونده: {n}",
    "مهلت اعتراض به رأی صادره ده روز از تاریخ ابلاغ است.",
    "این پیام از طریق کارپوشه ملی ارسال شده و نیازی به مراجعه حضوری برای دریافت نسخه کاغذی نیست.",
];

const MUNICIPALITY_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.40,
        kind: NoticeKind::Bill,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["صورتحساب عوارض نوسازی و عمران شهری سال {y}", "عوارض سالانه خودرو سال {y}"],
        leads: &[
            "عوارض نوسازی و عمران شهری ملک شما به شماره پرونده نوسازی {n} در شهر {s} برای سال {y} به مبلغ {a} ریال محاسبه شده است.",
            "عوارض سالانه خودروی شما به شماره پلاک {l} برای سال {y} به مبلغ {a} ریال محاسبه شده و مهلت پرداخت آن تا تاریخ {d} است.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::Permit,
        life: LifeEvent::PropertyRegistration,
        to: To::Any,
        titles: &["صدور پروانه ساختمانی شماره {n}", "صدور گواهی پایان کار ساختمان"],
        leads: &[
            "پروانه ساختمانی ملک شما واقع در منطقه {b} شهرداری {s} به شماره {n} در تاریخ {t} صادر شد و اعتبار آن تا تاریخ {d} است.",
            "گواهی پایان کار ساختمان شما به شماره پرونده {n} صادر شد و نسخه الکترونیک آن به پیوست ارسال می\u{200c}گردد.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::ServiceNotice,
        life: LifeEvent::PropertyRegistration,
        to: To::Any,
        titles: &["ابلاغ رأی کمیسیون ماده ۱۰۰ - پرونده {n}", "اخطاریه ماده ۵۵ قانون شهرداری\u{200c}ها"],
        leads: &[
            "رأی کمیسیون ماده ۱۰۰ قانون شهرداری\u{200c}ها در خصوص تخلفات ساختمانی ملک شما به پرونده شماره {n} صادر شده و به موجب آن جریمه\u{200c}ای به مبلغ {a} ریال تعیین گردیده است.",
            "به استناد بند ۱۴ ماده ۵۵ قانون شهرداری\u{200c}ها، خواهشمند است ظرف ده روز از تاریخ ابلاغ نسبت به رفع خطر ناشی از بنای مخروبه ملک خود اقدام نمایید.",
        ],
    },
    Variant {
        weight: 0.20,
        kind: NoticeKind::Announcement,
        life: LifeEvent::UrbanUtilities,
        to: To::Any,
        titles: &["اطلاعیه تخفیف عوارض نوسازی تا تاریخ {d}"],
        leads: &[
            "شهرداری {s} به منظور تشویق شهروندان خوش\u{200c}حساب، برای پرداخت کامل عوارض سال جاری تا تاریخ {d} تخفیف ویژه در نظر گرفته است.",
        ],
    },
];

const INSURANCE_FILLER: &[&str] = &[
    "برای مشاهده جزئیات بیمه\u{200c}نامه و سوابق خسارت به سامانه جامع بیمه مرکزی جمهوری اسلامی ایران مراجعه فرمایید.",
    "در صورت بروز حادثه، مراتب را ظرف پنج روز کاری به نزدیک\u{200c}ترین شعبه یا نمایندگی اطلاع دهید.",
    "تخفیف عدم خسارت شما در بیمه\u{200c}نامه بعدی محفوظ است.",
    "مرکز تماس بیمه سلامت با شماره ۱۶۶۶ آماده پاسخگویی است.",
    "کد رهگیری: {c}",
    "اعتراض به میزان خسارت تعیین\u{200c}شده از طریق سامانه رسیدگی به شکایات بیمه مرکزی امکان\u{200c}پذیر است.",
];

const INSURANCE_VARIANTS: &[Variant] = &[
    Variant {
        weight: 0.35,
        kind: NoticeKind::ServiceResult,
        life: LifeEvent::Insurance,
        to: To::Any,
        titles: &["نتیجه رسیدگی به پرونده خسارت شماره {n}"],
        leads: &[
            "پرونده خسارت شما به شماره {n} بررسی و مبلغ {a} ریال به عنوان خسارت قابل پرداخت تعیین شد که ظرف پنج روز کاری به حساب شما واریز خواهد شد.",
        ],
    },
    Variant {
        weight: 0.25,
        kind: NoticeKind::Letter,
        life: LifeEvent::Insurance,
        to: To::Any,
        titles: &["یادآوری تمدید بیمه\u{200c}نامه شخص ثالث خودرو پلاک {l}"],
        leads: &[
            "بیمه\u{200c}نامه شخص ثالث خودروی شما به شماره پلاک {l} در تاریخ {d} منقضی می\u{200c}شود؛ لطفاً پیش از این تاریخ نسبت به تمدید آن اقدام فرمایید.",
        ],
    },
    Variant {
        weight: 0.25,
        kind: NoticeKind::Announcement,
        life: LifeEvent::Health,
        to: To::Person,
        titles: &["اطلاعیه تمدید پوشش بیمه سلامت همگانی"],
        leads: &[
            "پوشش بیمه سلامت همگانی شما و افراد تحت تکفل تا پایان سال {y} تمدید شد و نیازی به مراجعه حضوری نیست.",
        ],
    },
    Variant {
        weight: 0.15,
        kind: NoticeKind::Bill,
        life: LifeEvent::Health,
        to: To::Any,
        titles: &["صورتحساب حق بیمه سلامت {p}"],
        leads: &["حق بیمه سلامت شما برای دوره {p} به مبلغ {a} ریال محاسبه شده و مهلت پرداخت آن تا تاریخ {d} است."],
    },
];

static AGENCIES: [AgencySpec; AGENCY_COUNT] = [
    AgencySpec {
        id: "tax",
        share: 0.28,
        legal_share: 0.25,
        salutation: "مؤدی گرامی،",
        salutation_legal: "مؤدی محترم (شخص حقوقی)،",
        signature: "اداره کل امور مالیاتی استان {v}\nسازمان امور مالیاتی کشور",
        variants: TAX_VARIANTS,
        filler: TAX_FILLER,
        attachments: &[
            "برگ_تشخیص",
            "برگ_قطعی_مالیات",
            "صورتحساب_مالیاتی",
            "جدول_محاسبه_مالیات",
        ],
        amount: (5_000_000, 50_000_000_000, 1_000),
        expiry_years: &[5, 5, 7, 10, 10],
        batch_prob: 0.6,
        access: (0.05, 0.005),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
    AgencySpec {
        id: "social-security",
        share: 0.18,
        legal_share: 0.20,
        salutation: "بیمه\u{200c}شده گرامی،",
        salutation_legal: "کارفرمای محترم،",
        signature: "شعبه {b} سازمان تأمین اجتماعی {s}\nسازمان تأمین اجتماعی",
        variants: SOCIAL_VARIANTS,
        filler: SOCIAL_FILLER,
        attachments: &["فیش_مستمری", "لیست_حق_بیمه", "برگ_اجرایی", "سوابق_بیمه"],
        amount: (5_000_000, 2_000_000_000, 1_000),
        expiry_years: &[5, 10, 10],
        batch_prob: 0.5,
        access: (0.03, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: true,
    },
    AgencySpec {
        id: "judiciary",
        share: 0.15,
        legal_share: 0.10,
        salutation: "مخاطب محترم،",
        salutation_legal: "مدیرعامل محترم،",
        signature:
            "مدیر دفتر شعبه {b} دادگاه عمومی حقوقی شهرستان {s}\nقوه قضاییه جمهوری اسلامی ایران",
        variants: JUDICIARY_VARIANTS,
        filler: JUDICIARY_FILLER,
        attachments: &["دادنامه", "نسخه_دوم_دادخواست", "ضمائم_پرونده", "اجراییه"],
        amount: (10_000_000, 100_000_000_000, 100_000),
        expiry_years: &[10],
        batch_prob: 0.05,
        access: (0.40, 0.03),
        json: JsonStyle::PythonAscii,
        time: TimeStyle::Python,
        omit_defaults: false,
    },
    AgencySpec {
        id: "utilities",
        share: 0.20,
        legal_share: 0.08,
        salutation: "مشترک گرامی،",
        salutation_legal: "مشترک محترم (شخص حقوقی)،",
        signature:
            "امور مشترکین شهر {s}\nشرکت\u{200c}های خدمات\u{200c}رسان آب، برق و گاز استان {v}",
        variants: UTILITIES_VARIANTS,
        filler: UTILITIES_FILLER,
        attachments: &["صورتحساب", "قبض", "جزئیات_مصرف"],
        amount: (80_000, 30_000_000, 1_000),
        expiry_years: &[1, 2, 2, 3],
        batch_prob: 0.95,
        access: (0.0, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: true,
    },
    AgencySpec {
        id: "civil-registry",
        share: 0.05,
        legal_share: 0.0,
        salutation: "هموطن گرامی،",
        salutation_legal: "هموطن گرامی،",
        signature: "اداره کل ثبت احوال استان {v}\nسازمان ثبت احوال کشور",
        variants: CIVIL_VARIANTS,
        filler: CIVIL_FILLER,
        attachments: &["گواهی", "تصویر_سند", "رسید_پیگیری"],
        amount: (100_000, 3_000_000, 10_000),
        expiry_years: &[10],
        batch_prob: 0.1,
        access: (0.10, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
    AgencySpec {
        id: "traffic-police",
        share: 0.08,
        legal_share: 0.05,
        salutation: "مالک محترم خودرو،",
        salutation_legal: "مدیر محترم ناوگان،",
        signature: "پلیس راهنمایی و رانندگی فراجا",
        variants: TRAFFIC_VARIANTS,
        filler: TRAFFIC_FILLER,
        attachments: &["تصویر_تخلف", "قبض_جریمه", "سوابق_تخلفات"],
        amount: (500_000, 10_000_000, 500_000),
        expiry_years: &[2, 3, 5],
        batch_prob: 0.7,
        access: (0.02, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: true,
    },
    AgencySpec {
        id: "municipality",
        share: 0.04,
        legal_share: 0.10,
        salutation: "شهروند گرامی،",
        salutation_legal: "مدیرعامل محترم،",
        signature: "معاونت درآمد و امور مالی شهرداری {s}",
        variants: MUNICIPALITY_VARIANTS,
        filler: MUNICIPALITY_FILLER,
        attachments: &[
            "پروانه_ساختمانی",
            "نقشه_ملک",
            "رأی_کمیسیون",
            "صورتحساب_عوارض",
        ],
        amount: (1_000_000, 5_000_000_000, 1_000),
        expiry_years: &[3, 5, 10],
        batch_prob: 0.4,
        access: (0.05, 0.01),
        json: JsonStyle::Compact,
        time: TimeStyle::Utc,
        omit_defaults: false,
    },
    AgencySpec {
        id: "insurance",
        share: 0.02,
        legal_share: 0.10,
        salutation: "بیمه\u{200c}گذار گرامی،",
        salutation_legal: "بیمه\u{200c}گذار محترم (شخص حقوقی)،",
        signature: "بیمه مرکزی جمهوری اسلامی ایران",
        variants: INSURANCE_VARIANTS,
        filler: INSURANCE_FILLER,
        attachments: &["بیمه\u{200c}نامه", "گزارش_کارشناسی", "صورت_خسارت"],
        amount: (1_000_000, 500_000_000, 1_000),
        expiry_years: &[2, 3, 5],
        batch_prob: 0.3,
        access: (0.02, 0.0),
        json: JsonStyle::Compact,
        time: TimeStyle::Tehran,
        omit_defaults: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
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
    fn agencies_are_consistent() {
        let total: f64 = Traffic::agencies().iter().map(|a| a.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for (spec, (id, share)) in AGENCIES.iter().zip(Traffic::agencies()) {
            assert_eq!(spec.id, *id);
            assert_eq!(spec.share, *share);
            karpoosheh_schemas::AgencyId::parse(id).unwrap();
            let w: f64 = spec.variants.iter().map(|v| v.weight).sum();
            assert!((w - 1.0).abs() < 1e-9, "{id} variant weights add up to {w}");
        }
        let bad: f64 = Traffic::bad_mix().iter().map(|b| b.1).sum();
        assert!((bad - 1.0).abs() < 1e-9);
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
    fn python_formatter_escapes_like_python() {
        let mut out = Vec::new();
        let v = serde_json::json!({"a": "سلام\u{200c}ها 😀\n", "b": [1, 2]});
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonAscii,
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a": "\u0633\u0644\u0627\u0645\u200c\u0647\u0627 \ud83d\ude00\n", "b": [1, 2]}"#
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(gregorian_to_jalali(2024, 3, 20), (1403, 1, 1));
        assert_eq!(gregorian_to_jalali(2025, 3, 21), (1404, 1, 1));
        assert_eq!(gregorian_to_jalali(2026, 11, 23), (1405, 9, 2));
        let mut s = String::new();
        push_rfc3339(&mut s, start().timestamp(), Some(1234), true);
        assert_eq!(s, "2026-11-23T13:30:00.001234+03:30");
        s.clear();
        push_rfc3339(&mut s, start().timestamp(), None, false);
        assert_eq!(s, "2026-11-23T10:00:00Z");
        let t = traffic();
        s.clear();
        t.push_jalali(&mut s, 0);
        assert_eq!(s, "۱۴۰۵/۰۹/۰۲");
        s.clear();
        push_fa_grouped(&mut s, 12_500_000);
        assert_eq!(s, "۱۲٬۵۰۰٬۰۰۰");
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for k in 0..50_000 {
            let p = person_id(k);
            assert_eq!(MailboxId::parse(&p.to_string()), Ok(p));
            assert!(seen.insert(p));
            let l = legal_id(k);
            assert_eq!(MailboxId::parse(&l.to_string()), Ok(l));
            assert!(seen.insert(l));
        }
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
