//! The report's streamed objects ([`keyfleet_reports::upload::Upload`])
//! against the emulator's S3: an object larger than a part goes up as a
//! multipart upload and reads back whole; a small one is one PutObject; an
//! aborted one leaves nothing.

use crate::fleet::*;
use keyfleet_reports::upload::Upload;

/// S3's smallest part (but for the last), which the emulator enforces too.
const MIN_PART: usize = 5 * 1024 * 1024;

fn chunk(i: usize) -> Vec<u8> {
    format!("{i:08}:{}\n", "x".repeat(1014)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_larger_than_a_part_is_uploaded_in_parts_and_reads_back_whole() {
    let central = Central::new(Setup::default()).await;
    let s3 = central.s3();
    let bucket = central.bucket();
    let mut expected = Vec::new();
    let mut up = Upload::with_part_bytes(s3.clone(), &bucket, "t/big.csv", "text/csv", MIN_PART);
    // 11 MiB in 1 KiB writes: two full parts and a last, short one.
    for i in 0..11 * 1024 {
        let c = chunk(i);
        expected.extend_from_slice(&c);
        up.write(&c).await.expect("write");
    }
    assert_eq!(up.finish().await.expect("finish"), expected.len());
    assert_eq!(central.object("t/big.csv").await, Some(expected));

    let mut small =
        Upload::with_part_bytes(s3.clone(), &bucket, "t/small.csv", "text/csv", MIN_PART);
    small.write(b"a,b\r\n").await.expect("write");
    small.finish().await.expect("finish");
    assert_eq!(
        central.object("t/small.csv").await,
        Some(b"a,b\r\n".to_vec())
    );

    let mut given_up =
        Upload::with_part_bytes(s3.clone(), &bucket, "t/gone.csv", "text/csv", MIN_PART);
    for i in 0..6 * 1024 {
        given_up.write(&chunk(i)).await.expect("write");
    }
    given_up.abort().await;
    assert_eq!(central.object("t/gone.csv").await, None);
    let open = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .prefix("t/")
        .send()
        .await
        .expect("list uploads");
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}
