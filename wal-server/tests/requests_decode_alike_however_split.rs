//! Whatever pieces a connection's bytes arrive in, the decoder yields the
//! same requests, in order; arbitrary bytes never panic it, and it never
//! takes more than it was given.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wal_server::{Decoder, Limits, encode_request};

fn args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
}

proptest! {
    #[test]
    fn pipelined_requests_decode_the_same_in_any_pieces(
        requests in prop::collection::vec(args(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = BytesMut::new();
        for r in &requests {
            let refs: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
            encode_request(&refs, &mut wire);
        }
        let wire = wire.freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut got: Vec<Vec<Bytes>> = Vec::new();
        let mut from = 0;
        for p in points {
            buf.extend_from_slice(&wire[from..p]);
            from = p;
            while let Some(request) = decoder.decode(&mut buf).unwrap() {
                got.push(request);
            }
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Vec<Bytes>> = requests
            .into_iter()
            .map(|r| r.into_iter().map(Bytes::from).collect())
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&input[..]);
        let before = buf.len();
        let mut taken = 0;
        while let Ok(Some(request)) = decoder.decode(&mut buf) {
            taken += 1;
            prop_assert!(!request.is_empty());
            prop_assert!(taken <= before);
        }
        prop_assert!(buf.len() <= before);
    }

    #[test]
    fn protocol_looking_garbage_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                Just(b"-1".to_vec()), Just(b"3".to_vec()), Just(b"\"".to_vec()),
                Just(b"'".to_vec()), Just(b"\\x".to_vec()), Just(b" ".to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..40,
        )
    ) {
        let input = parts.concat();
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }
}
