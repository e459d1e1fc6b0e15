//! Store layout ablation on raw fjall: why the embedded store keys the big
//! notice records by time-ordered tracking code and keeps the random-order
//! mailbox index tiny.
//!
//! Same notices (~1.3 KB, random recipients), same batches (1000, one
//! fdatasync each), two layouts:
//! - `time_ordered` (what FjallStore does): record under the tracking code
//!   (arrives in key order), plus a 17-byte mailbox index key, no value.
//! - `mailbox_ordered` (the obvious layout): record under mailbox ‖ code,
//!   so the big values arrive in random key order.
//!
//! Runs each three times, alternating, and prints medians and the ratio.
//! `cargo bench --bench layout` (about a minute).

use std::time::Instant;

use fjall::{Database, KeyspaceCreateOptions, PersistMode};

const NOTICES: u64 = 1_000_000;
const BATCH: u64 = 1000;
const WORDS: &str =
    "بدینوسیله به اطلاع می‌رساند پرونده مالیاتی شما در اداره کل امور مالیاتی استان تهران \
    بررسی و برگ تشخیص به مبلغ ۱۲٬۴۵۰٬۰۰۰ ریال صادر شد مهلت اعتراض سی روز از تاریخ ابلاغ است \
    شعبه ۱۲ دادگاه عمومی حقوقی جلسه رسیدگی ساعت ۹ صبح مورخ ۱۴۰۵/۰۹/۱۵ حضور شما الزامی است \
    قبض آب مصرفی دوره آبان شماره اشتراک ۴۵۸۷۲۱ مبلغ قابل پرداخت شناسه پرداخت بیمه تامین اجتماعی \
    سوابق بیمه‌ای کارفرما کارگاه شماره ۸۸۲۱۴ حق بیمه معوق جریمه تاخیر گواهی پایان کار شهرداری \
    منطقه ۶ پروانه ساختمانی ثبت احوال شناسنامه ازدواج ولادت فوت راهنمایی و رانندگی جریمه پلاک";

fn run(time_ordered: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .cache_size(256 << 20)
        .open()
        .unwrap();
    let opts = || KeyspaceCreateOptions::default().max_memtable_size(64 << 20);
    let records = db.keyspace("records", opts).unwrap();
    let index = db.keyspace("index", opts).unwrap();
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let t = Instant::now();
    let mut i = 0u64;
    while i < NOTICES {
        let mut b = db.batch().durability(Some(PersistMode::SyncData));
        for _ in 0..BATCH {
            let code = i; // time-ordered tracking code
            let mailbox = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 90_000_000;
            let mut mkey = [0u8; 17];
            mkey[1..9].copy_from_slice(&mailbox.to_be_bytes());
            mkey[9..].copy_from_slice(&(!code).to_be_bytes());
            // Text drawn from real words, so it compresses like a notice.
            let mut v = Vec::with_capacity(1400);
            while v.len() < 1300 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                v.extend_from_slice(words[(rng % words.len() as u64) as usize].as_bytes());
                v.push(b' ');
            }
            if time_ordered {
                b.insert(&records, code.to_be_bytes(), v);
                b.insert(&index, mkey, []);
            } else {
                b.insert(&records, mkey, v);
            }
            i += 1;
        }
        b.commit().unwrap();
    }
    NOTICES as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("layout: bench");
        return;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(run(true));
        b.push(run(false));
    }
    let (ma, mb) = (median(a.clone()), median(b.clone()));
    println!("layout/time_ordered     median {ma:>9.0} notices/s  runs {a:.0?}");
    println!("layout/mailbox_ordered  median {mb:>9.0} notices/s  runs {b:.0?}");
    println!("ratio time_ordered / mailbox_ordered = {:.2}", ma / mb);
}
