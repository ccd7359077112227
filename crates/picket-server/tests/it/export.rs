//! The CSV export: contract header, one row per sensor, tags in one quoted cell, formulas
//! neutralised, same filters and sort as the list, and more rows than one store batch.

use picket_testkit::server::TestServer;
use reqwest::Method;

use crate::support::*;

both_backends!(header_rows_quoting_and_neutralisation, filters_sort_and_many_batches);

const HEADER: &str = "Sensor,Type,Domain,Subscription,Site,Zone,Tags,Mode,Service Status,Sensor Status,Version,Delayed Update,Health Status,Health Issues,Created,Last Seen";

fn parse(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

async fn header_rows_quoting_and_neutralisation(srv: TestServer) {
    let mut a = row(&srv, 1, "DC01");
    a.tags = vec!["prod".into(), "tier 1".into()];
    a.site = "=HYPERLINK(\"http://evil\")".into();
    a.description = "ignored".into();
    let mut b = row(&srv, 2, "DC02");
    b.tags = vec!["+SUM(A1)".into(), "x\"y".into()];
    b.site = "@home".into();
    b.version = None;
    b.last_seen_at = None;
    b.delayed_update = true;
    let mut c = row(&srv, 3, "DC03");
    c.site = "-1".into();
    c.tags = vec!["\tstart".into()];
    import(&srv, vec![a, b, c]).await;

    let r = get(&srv, "/api/v1/sensors/export.csv").await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers["content-disposition"].to_str().unwrap().contains("sensors.csv"));
    assert_eq!(r.text.lines().next().unwrap(), HEADER);
    let rows = parse(&r.text);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], HEADER.split(',').collect::<Vec<_>>());
    let dc01 = &rows[1];
    assert_eq!(dc01[0], "DC01");
    assert_eq!(dc01[1], "domain_controller");
    assert_eq!(dc01[2], "corp.example.com");
    assert_eq!(dc01[3], "default");
    assert_eq!(dc01[4], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(dc01[5], "default");
    assert_eq!(dc01[6], "prod, tier 1");
    assert_eq!(dc01[7], "cloud_connected");
    assert_eq!(dc01[8], "running");
    assert_eq!(dc01[9], "up_to_date");
    assert_eq!(dc01[10], "1.0.0");
    assert_eq!(dc01[11], "false");
    assert_eq!(dc01[12], "healthy");
    assert_eq!(dc01[13], "0");
    assert!(dc01[14].ends_with('Z') && dc01[15].ends_with('Z'));
    // Tags with commas in the joined cell are one quoted cell on the wire.
    assert!(r.text.contains("\"prod, tier 1\""), "{}", r.text);
    let dc02 = &rows[2];
    assert_eq!(dc02[4], "'@home");
    assert_eq!(dc02[6], "'+SUM(A1), x\"y");
    assert_eq!(dc02[10], "");
    assert_eq!(dc02[11], "true");
    assert_eq!(dc02[15], "");
    let dc03 = &rows[3];
    assert_eq!(dc03[4], "'-1");
    assert_eq!(dc03[6], "'\tstart");

    // Viewers may export; without a token it is 401 JSON, bad filters 400 before streaming.
    let viewer = token(&srv, "viewer", None).await;
    assert_eq!(call(&srv, Method::GET, "/api/v1/sensors/export.csv", Some(&viewer), None).await.status.as_u16(), 200);
    get(&srv, "/api/v1/sensors/export.csv?type=router").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors/export.csv?limit=5").await.error(400, "bad_request");
}

async fn filters_sort_and_many_batches(srv: TestServer) {
    let mut rows = Vec::new();
    for i in 0..2100 {
        let mut r = row(&srv, i, &format!("S{i:05}"));
        if i % 3 == 0 {
            r.tags = vec!["third".into()];
        }
        rows.push(r);
    }
    for chunk in rows.chunks(500) {
        import(&srv, chunk.to_vec()).await;
    }
    let all = get(&srv, "/api/v1/sensors/export.csv").await;
    let parsed = parse(&all.text);
    assert_eq!(parsed.len(), 2101);
    let names: Vec<&str> = parsed[1..].iter().map(|r| r[0].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "default sort is by name");
    sorted.dedup();
    assert_eq!(sorted.len(), 2100, "every sensor exactly once across batches");

    let desc = parse(&get(&srv, "/api/v1/sensors/export.csv?sort=-name&tag=third").await.text);
    assert_eq!(desc.len(), 1 + 700);
    assert_eq!(desc[1][0], "S02097");
    assert!(desc[1..].iter().all(|r| r[6] == "third"));
}
