// ScheduleMathTests.swift — tests for the scheduler's pure schedule math: the
// CPython-compatible Mersenne Twister, spread, interval parsing,
// next_in_interval, Schedule.next, expiry (Schedule.expire), tag order, SLA
// and backoff, with values computed by backy 2.4.3's own code.

import Foundation
import XCTest

@testable import Scheduler

/// "YYYY-MM-DD HH:MM:SS" (optionally ".ffffff") in UTC.
private func utc(_ text: String) -> Date {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.calendar = Calendar(identifier: .gregorian)
    formatter.dateFormat = text.contains(".") ? "yyyy-MM-dd HH:mm:ss.SSSSSS" : "yyyy-MM-dd HH:mm:ss"
    guard let date = formatter.date(from: text) else { fatalError("bad test date \(text)") }
    return date
}

private let day = 86_400
private let hour = 3_600
private let week = 7 * 86_400

/// The frozen clock of backy's test suite.
private let clock = utc("2015-09-01 07:06:47")

private func rev(_ id: String, _ timestamp: Date, _ tags: Set<String>, complete: Bool = true) -> ScheduleRevision {
    ScheduleRevision(id: id, timestamp: timestamp, tags: tags, complete: complete)
}

private func schedule(_ entries: [String: (Int, Int)]) -> Schedule {
    try! Schedule(entries.mapValues { ScheduleTag(interval: $0.0, keep: $0.1) })
}

/// The `schedule` fixture of backy's tests: one tag `daily` (1d, keep 5).
private let dailySchedule = schedule(["daily": (day, 5)])

final class MersenneTwisterTests: XCTestCase {
    // Expected values produced by CPython 3.11's `random.Random(seed).getrandbits(32)`.
    func testSeedingMatchesCPython() {
        let cases: [(Int64, [UInt32])] = [
            (0, [3_626_764_237, 1_654_615_998, 3_255_389_356]),
            (1, [577_090_037, 2_444_712_010, 3_639_700_191]),
            (12345, [1_789_368_711, 3_146_859_322, 43_676_229]),
            (4_294_967_296, [485_306_839, 1_508_871_100, 1_794_561_286]),
            (-7, [1_390_851_128, 4_071_050_724, 647_892_279]),
        ]
        for (seed, expected) in cases {
            var generator = MersenneTwister(seed: seed)
            XCTAssertEqual((0..<3).map { _ in generator.next32() }, expected, "seed \(seed)")
        }
    }

    func testMultiWordSeedMatchesCPython() {
        // random.seed(2**64 + 5): key words [5, 0, 1]
        var generator = MersenneTwister(key: [5, 0, 1])
        XCTAssertEqual((0..<3).map { _ in generator.next32() }, [2_192_917_427, 3_085_273_184, 3_778_534_651])
    }

    func testLeadingZeroWordsOfBigEndianSeedAreDropped() {
        // random.seed(0x00000000ffffffff00000000000000aa): CPython uses 3 key words.
        let bytes: [UInt8] = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xaa]
        var generator = MersenneTwister(bigEndianSeed: bytes)
        XCTAssertEqual([generator.next32(), generator.next32()], [60_388_659, 1_403_821_586])
        var same = MersenneTwister(key: [0xaa, 0, 0xffff_ffff])
        XCTAssertEqual([same.next32(), same.next32()], [60_388_659, 1_403_821_586])
        var zero = MersenneTwister(bigEndianSeed: [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(zero.next32(), 3_626_764_237)
    }

    func testStateRegeneratesAfter624Outputs() {
        var generator = MersenneTwister(seed: 5)
        for _ in 0..<700 { _ = generator.next32() }
        XCTAssertEqual(generator.next32(), 2_773_421_110)
    }

    func testGetrandbitsWiderThan32() {
        var generator = MersenneTwister(seed: 5)
        XCTAssertEqual(generator.getrandbits(64), 4_712_128_852_136_459_333)
        XCTAssertEqual(generator.getrandbits(40), 394_027_974_809)
    }

    func testRandintMatchesCPython() {
        // k = 32 (n = 2^31 + 1): raw outputs below n.
        var a = MersenneTwister(seed: 12345)
        XCTAssertEqual((0..<5).map { _ in a.randint(0, 1 << 31) },
                       [1_789_368_711, 43_676_229, 1_282_648_386, 1_582_316_135, 831_769_172])
        // k = 33 (n = 2^32): two words per draw.
        var b = MersenneTwister(seed: 12345)
        XCTAssertEqual((0..<5).map { _ in b.randint(0, (1 << 32) - 1) },
                       [831_769_172, 2_430_986_565, 694_443_915, 1_859_447_115, 2_376_066_489])
        // n = 2 → k = 2 (bit length of n, not n − 1).
        var c = MersenneTwister(seed: 12345)
        XCTAssertEqual((0..<8).map { _ in c.randint(0, 1) }, [1, 0, 1, 1, 0, 1, 1, 0])
        // n = 1 still consumes outputs until a 0 is drawn.
        var d = MersenneTwister(seed: 12345)
        XCTAssertEqual((0..<3).map { _ in d.randint(5, 5) }, [5, 5, 5])
        XCTAssertEqual(d.next32(), 3_672_791_226)
    }
}

final class SpreadTests: XCTestCase {
    func testSpreadVectors() {
        let vectors: [(String, [Int])] = [
            ("test01", [19971, 159_773, 639_092]),
            ("test02", [36217, 289_741, 1_158_966]),
            ("asdf02", [14532, 116_261, 465_044]),
            ("foo00", [72995, 583_962, 2_335_850]),
        ]
        for (name, expected) in vectors {
            let got = [86400, 604_800, 2_592_000].map { spread(jobName: name, maxInterval: $0) }
            XCTAssertEqual(got, expected, name)
        }
    }

    func testSpreadOfZeroIntervalIsZero() {
        XCTAssertEqual(spread(jobName: "test01", maxInterval: 0), 0)
    }

    func testSpreadUsesLargestIntervalOfSchedule() throws {
        let defaultSchedule = try Schedule(config: [
            "daily": (interval: "1d", keep: 7), "weekly": (interval: "1w", keep: 4),
            "monthly": (interval: "30d", keep: 3),
        ])
        XCTAssertEqual(defaultSchedule.maxInterval, 2_592_000)
        XCTAssertEqual(defaultSchedule.minInterval, 86400)
        XCTAssertEqual(spread(jobName: "test01", maxInterval: defaultSchedule.maxInterval), 639_092)
    }
}

final class DurationTests: XCTestCase {
    func testParseDurationVectors() throws {
        XCTAssertEqual(try parseDuration("1w"), 604_800)
        XCTAssertEqual(try parseDuration("3h"), 10800)
        XCTAssertEqual(try parseDuration("25m"), 1500)
        XCTAssertEqual(try parseDuration("10s"), 10)
        XCTAssertEqual(try parseDuration("5"), 5)
        XCTAssertEqual(try parseDuration("1d"), 86400)
        XCTAssertEqual(try parseDuration("30d"), 2_592_000)
    }

    func testYamlIntegerTextAndWhitespace() throws {
        XCTAssertEqual(try parseDuration("86400"), 86400)
        XCTAssertEqual(try parseDuration(" 7d "), 604_800)
        XCTAssertEqual(try parseDuration("+5"), 5)
        XCTAssertEqual(try parseDuration("1 d"), 86400)
    }

    func testRejectsGarbageZeroAndNegatives() {
        for bad in ["", "  ", "abc", "d", "0", "0d", "00", "-1", "-3h", "1x", "1.5h", "1D", "h1", "1dd", "1_000",
                    "99999999999999999999", "9999999999w", "4294967296"] {
            XCTAssertThrowsError(try parseDuration(bad), "\"\(bad)\"") { error in
                guard let error = error as? DurationError else { return XCTFail("wrong error type") }
                XCTAssertEqual(error.value, bad)
                XCTAssertTrue(error.description.contains("\"\(bad)\""), error.description)
            }
        }
        XCTAssertEqual(try parseDuration("4294967295"), 4_294_967_295)
    }

    func testScheduleConfigErrorsNameTheBadValue() {
        XCTAssertThrowsError(try Schedule(config: ["daily": (interval: "1x", keep: 5)])) { error in
            XCTAssertTrue("\(error)".contains("daily"), "\(error)")
            XCTAssertTrue("\(error)".contains("1x"), "\(error)")
        }
        XCTAssertThrowsError(try Schedule(config: ["daily": (interval: "1d", keep: 0)])) { error in
            XCTAssertEqual(error as? ScheduleError, .invalidKeep(tag: "daily", keep: 0))
            XCTAssertTrue("\(error)".contains("0"), "\(error)")
        }
        XCTAssertThrowsError(try Schedule(config: [:])) { error in
            XCTAssertEqual(error as? ScheduleError, .empty)
        }
        XCTAssertThrowsError(try Schedule(["x": ScheduleTag(interval: 0, keep: 1)])) { error in
            XCTAssertEqual(error as? ScheduleError, .intervalOutOfRange(tag: "x", seconds: 0))
        }
        XCTAssertEqual(try Schedule(config: ["daily": (interval: "86400", keep: 5)]).entries,
                       ["daily": ScheduleTag(interval: 86400, keep: 5)])
    }
}

final class NextInIntervalTests: XCTestCase {
    // test_schedule.py::test_next_in_interval
    func testReferenceVectors() {
        let expected = utc("2015-09-02 00:01:40")
        XCTAssertEqual(nextInInterval(now: clock, interval: day, spread: 100), expected)
        XCTAssertEqual(nextInInterval(now: clock.addingTimeInterval(30 * 60), interval: day, spread: 100), expected)
        XCTAssertEqual(nextInInterval(now: clock.addingTimeInterval(60 * 60), interval: day, spread: 100), expected)
        XCTAssertEqual(nextInInterval(now: utc("2015-09-02 00:01:20"), interval: day, spread: 100), expected)
        XCTAssertEqual(nextInInterval(now: utc("2015-09-02 00:01:41"), interval: day, spread: 100),
                       utc("2015-09-03 00:01:40"))
    }

    func testStrictlyAfterNowAtAGridPoint() {
        XCTAssertEqual(nextInInterval(now: utc("2015-09-02 00:01:40"), interval: day, spread: 100),
                       utc("2015-09-03 00:01:40"))
        XCTAssertEqual(nextInInterval(now: utc("2015-09-02 00:01:39.500000"), interval: day, spread: 100),
                       utc("2015-09-02 00:01:40"))
        XCTAssertEqual(nextInInterval(now: utc("2015-09-02 00:01:40.250000"), interval: day, spread: 100),
                       utc("2015-09-03 00:01:40"))
    }

    func testGridIsAnchoredAtYearOne() {
        XCTAssertEqual(yearOneToUnixEpoch, 62_135_596_800)
        // Just before 0001-01-01 00:00:00 UTC, the next grid point is that instant.
        let yearOne = Date(timeIntervalSince1970: -62_135_596_800)
        XCTAssertEqual(nextInInterval(now: yearOne.addingTimeInterval(-1), interval: day, spread: 0), yearOne)
        // 0001-01-01 was a Monday: weekly grids start on Mondays (1970-01-01 was a Thursday).
        XCTAssertEqual(nextInInterval(now: Date(timeIntervalSince1970: 0), interval: week, spread: 0),
                       utc("1970-01-05 00:00:00"))
        XCTAssertEqual(nextInInterval(now: clock, interval: week, spread: 1), utc("2015-09-07 00:00:01"))
        // Daily grids start at midnight UTC; a 30 d grid as Python computes it.
        XCTAssertEqual(nextInInterval(now: clock, interval: day, spread: 0), utc("2015-09-02 00:00:00"))
        XCTAssertEqual(nextInInterval(now: clock, interval: 30 * day, spread: 0), utc("2015-09-30 00:00:00"))
    }

    func testSpreadIsReducedModuloInterval() {
        XCTAssertEqual(nextInInterval(now: clock, interval: day, spread: 100 + 5 * day),
                       utc("2015-09-02 00:01:40"))
        XCTAssertEqual(nextInInterval(now: clock, interval: hour, spread: 100 + hour),
                       utc("2015-09-01 08:01:40"))
    }

    // next_in_interval: job test01 on the default schedule (spread 639092).
    func testTest01DefaultScheduleTimes() {
        let s = 639_092
        XCTAssertEqual(nextInInterval(now: clock, interval: day, spread: s), utc("2015-09-01 09:31:32"))
        XCTAssertEqual(nextInInterval(now: clock, interval: week, spread: s), utc("2015-09-07 09:31:32"))
        XCTAssertEqual(nextInInterval(now: clock, interval: 30 * day, spread: s), utc("2015-09-07 09:31:32"))
    }
}

final class ScheduleNextTests: XCTestCase {
    private let dailyAndTest = schedule(["daily": (day, 5), "test": (week, 7)])

    func testFirstIntervalAfterNow() {
        let next = dailySchedule.next(now: clock, spread: 1, history: [])
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily"])
    }

    func testNewJobWaitsForFirstSlotAndTakesAllTags() {
        let next = dailyAndTest.next(now: clock, spread: 1, history: [])
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily", "test"])
    }

    func testIdealNextIsEarliestTag() {
        let ideal = dailyAndTest.idealNext(now: clock, spread: 1)
        XCTAssertEqual(ideal.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(ideal.tags, ["daily"])
    }

    func testRecentDailyMeansNothingMissed() {
        let history = [rev("a", clock.addingTimeInterval(-15), ["daily"])]
        XCTAssertEqual(dailySchedule.missedTags(now: clock, history: history), [])
        let next = dailySchedule.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily"])
    }

    func testAdHocTagDoesNotSatisfySchedule() {
        let history = [rev("a", clock.addingTimeInterval(-15), ["test"])]
        XCTAssertEqual(dailySchedule.missedTags(now: clock, history: history), ["daily"])
        let next = dailySchedule.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, clock)
        XCTAssertEqual(next.tags, ["daily"])
    }

    func testCatchUpUntilFiveMinutesBeforeNextRun() {
        let history = [rev("a", clock.addingTimeInterval(-1.6 * 86400), ["daily"])]
        var next = dailySchedule.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, clock)
        XCTAssertEqual(next.tags, ["daily"])

        let at2355 = utc("2015-09-01 23:55:00")
        next = dailySchedule.next(now: at2355, spread: 1, history: history)
        XCTAssertEqual(next.time, at2355)
        XCTAssertEqual(next.tags, ["daily"])

        next = dailySchedule.next(now: utc("2015-09-01 23:55:01"), spread: 1, history: history)
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily"])
    }

    func testCatchUpRunsAllMissedTagsNow() {
        let s = schedule(["daily": (day, 5), "hourly": (hour, 24), "weekly": (week, 4)])
        let history = [rev("a", clock.addingTimeInterval(-1.2 * 86400), ["daily"])]
        XCTAssertEqual(s.missedTags(now: clock, history: history), ["daily", "hourly", "weekly"])
        let next = s.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, clock)
        XCTAssertEqual(next.tags, ["daily", "hourly", "weekly"])
    }

    func testMissedTagsAreFoldedIntoAnImminentRun() {
        // Ideal run in exactly 5 minutes: not "more than 5 minutes away" → union at ideal time.
        let s = schedule(["daily": (day, 5), "weekly": (week, 4)])
        let history = [rev("a", utc("2015-09-01 00:00:01"), ["daily"])]
        let next = s.next(now: utc("2015-09-01 23:55:01"), spread: 1, history: history)
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily", "weekly"])
    }

    func testMissedBoundaryIsStrict() {
        // A revision exactly one interval old is missed; one second younger is not.
        XCTAssertEqual(dailySchedule.missedTags(now: clock, history: [rev("a", clock.addingTimeInterval(-86400), ["daily"])]),
                       ["daily"])
        XCTAssertEqual(dailySchedule.missedTags(now: clock, history: [rev("a", clock.addingTimeInterval(-86399), ["daily"])]),
                       [])
    }

    // Deliberate difference from 2.4.3 (2.4.3 counted them): incomplete revisions don't count.
    func testIncompleteRevisionsDoNotCountForMissedTags() {
        let history = [
            rev("old", clock.addingTimeInterval(-3 * 86400), ["daily"]),
            rev("broken", clock.addingTimeInterval(-15), ["daily"], complete: false),
        ]
        XCTAssertEqual(dailySchedule.missedTags(now: clock, history: history), ["daily"])
        let next = dailySchedule.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, clock)
        XCTAssertEqual(next.tags, ["daily"])
    }

    func testOnlyIncompleteHistoryWaitsLikeANewJob() {
        let history = [rev("broken", clock.addingTimeInterval(-15), ["daily"], complete: false)]
        let next = dailyAndTest.next(now: clock, spread: 1, history: history)
        XCTAssertEqual(next.time, utc("2015-09-02 00:00:01"))
        XCTAssertEqual(next.tags, ["daily", "test"])
    }

    // next_in_interval: larger-interval runs coincide with smaller ones and their tags merge.
    func testTest01DefaultScheduleMergesTags() throws {
        let s = try Schedule(config: [
            "daily": (interval: "1d", keep: 7), "weekly": (interval: "1w", keep: 4),
            "monthly": (interval: "30d", keep: 3),
        ])
        let spreadValue = spread(jobName: "test01", maxInterval: s.maxInterval)

        var next = s.next(now: clock, spread: spreadValue, history: [])
        XCTAssertEqual(next.time, utc("2015-09-01 09:31:32"))
        XCTAssertEqual(next.tags, ["daily", "weekly", "monthly"])

        let history = [
            rev("m", utc("2015-08-08 09:31:32"), ["daily", "monthly"]),
            rev("w", utc("2015-08-31 09:31:32"), ["daily", "weekly"]),
            rev("d", utc("2015-09-01 05:00:00"), ["daily"]),
        ]
        next = s.next(now: clock, spread: spreadValue, history: history)
        XCTAssertEqual(next.time, utc("2015-09-01 09:31:32"))
        XCTAssertEqual(next.tags, ["daily"])

        let monday = utc("2015-09-07 00:00:00")
        let recent = history + [rev("d2", utc("2015-09-06 09:31:32"), ["daily"])]
        next = s.next(now: monday, spread: spreadValue, history: recent)
        XCTAssertEqual(next.time, utc("2015-09-07 09:31:32"))
        XCTAssertEqual(next.tags, ["daily", "weekly", "monthly"])
    }
}

final class ExpiryTests: XCTestCase {
    /// test_schedule.py::test_do_not_expire_if_less_than_keep_and_inside_keep_interval,
    /// replayed step by step (keep 5, interval 1 d, now 2014-05-10 10:00).
    func testKeepCountAndKeepIntervalAndAdHocTags() {
        let now = utc("2014-05-10 10:00:00")
        var history = [rev("r1", utc("2014-05-10 10:00:00"), ["daily"])]
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())

        history += [
            rev("r2", utc("2014-05-09 10:00:00"), ["daily"]),
            rev("r3", utc("2014-05-08 10:00:00"), ["daily"]),
            rev("r4", utc("2014-05-07 10:00:00"), ["daily"]),
            rev("r5", utc("2014-05-06 10:00:00"), ["daily"]),
        ]
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())

        // One more than keep, but younger than keep × interval (threshold 2014-05-05 10:00): kept.
        history.append(rev("r6", utc("2014-05-06 11:00:00"), ["daily"]))
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())

        // More than keep and older than the threshold: loses its tag and is removed.
        history.append(rev("r7", utc("2014-05-04 11:00:00"), ["daily"]))
        XCTAssertEqual(dailySchedule.expire(now: now, history: history),
                       ExpiryResult(lostTags: ["r7": ["daily"]], remainingTags: ["r7": []], removed: ["r7"]))
        history.removeLast()

        // An ad-hoc tag never expires: the revision only loses `daily` and stays.
        history.append(rev("r8", utc("2014-05-04 11:00:00"), ["daily", "test"]))
        XCTAssertEqual(dailySchedule.expire(now: now, history: history),
                       ExpiryResult(lostTags: ["r8": ["daily"]], remainingTags: ["r8": ["test"]], removed: []))
    }

    func testFewerThanKeepNeverExpireHoweverOld() {
        let now = utc("2014-05-10 10:00:00")
        let history = (1...5).map { rev("r\($0)", now.addingTimeInterval(-Double($0) * 100 * 86400), ["daily"]) }
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())
    }

    func testNewestKeepSurviveEvenWhenOld() {
        let now = utc("2014-05-10 10:00:00")
        let history = (1...7).map { rev("r\($0)", now.addingTimeInterval(-Double($0) * 10 * 86400), ["daily"]) }
        let result = dailySchedule.expire(now: now, history: history)
        // Oldest first: r7, r6 expire; the newest five (r1…r5) stay although all are older than 5 d.
        XCTAssertEqual(result.removed, ["r7", "r6"])
        XCTAssertEqual(result.lostTags, ["r6": ["daily"], "r7": ["daily"]])
    }

    func testThresholdIsStrict() {
        let now = utc("2014-05-10 10:00:00")
        var history = (0..<5).map { rev("n\($0)", now.addingTimeInterval(-Double($0) * 3600), ["daily"]) }
        // Exactly keep × interval old: not older than the threshold → kept.
        history.append(rev("edge", utc("2014-05-05 10:00:00"), ["daily"]))
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())
        // One second older → expires.
        history[5] = rev("edge", utc("2014-05-05 09:59:59"), ["daily"])
        XCTAssertEqual(dailySchedule.expire(now: now, history: history).removed, ["edge"])
    }

    func testTagsExpireIndependently() {
        let s = schedule(["daily": (day, 2), "weekly": (week, 2)])
        let now = utc("2015-09-01 00:00:00")
        let history = [
            rev("a", utc("2015-07-01 00:00:00"), ["daily", "weekly"]),
            rev("b", utc("2015-08-01 00:00:00"), ["daily", "weekly"]),
            rev("c", utc("2015-08-30 00:00:00"), ["daily"]),
            rev("d", utc("2015-08-31 00:00:00"), ["daily", "weekly"]),
        ]
        // daily: newest 2 (c, d) stay; a and b are older than 2 d → lose daily.
        // weekly: a, b, d carry it; newest 2 (b, d) stay; a is older than 14 d → loses weekly.
        let result = s.expire(now: now, history: history)
        XCTAssertEqual(result.lostTags, ["a": ["daily", "weekly"], "b": ["daily"]])
        XCTAssertEqual(result.remainingTags, ["a": [], "b": ["weekly"]])
        XCTAssertEqual(result.removed, ["a"])
    }

    func testIncompleteRevisionsAreIgnored() {
        let now = utc("2014-05-10 10:00:00")
        var history = (1...4).map { rev("r\($0)", now.addingTimeInterval(-Double($0) * 10 * 86400), ["daily"]) }
        // Two incomplete revisions (one tag-less) neither count towards keep nor get removed here.
        history.append(rev("i1", now.addingTimeInterval(-60), ["daily"], complete: false))
        history.append(rev("i2", now.addingTimeInterval(-100 * 86400), [], complete: false))
        XCTAssertEqual(dailySchedule.expire(now: now, history: history), ExpiryResult())
    }

    func testTaglessCompleteRevisionsAreRemoved() {
        let now = utc("2014-05-10 10:00:00")
        let history = [
            rev("bare", utc("2014-05-09 10:00:00"), []),
            rev("kept", utc("2014-05-08 10:00:00"), ["daily"]),
            rev("manual", utc("2013-01-01 00:00:00"), ["manual"]),
        ]
        XCTAssertEqual(dailySchedule.expire(now: now, history: history),
                       ExpiryResult(lostTags: [:], remainingTags: [:], removed: ["bare"]))
    }

    func testResultDoesNotDependOnInputOrder() {
        let now = utc("2014-05-10 10:00:00")
        let history = (1...8).map { rev("r\($0)", now.addingTimeInterval(-Double($0) * 2 * 86400), ["daily"]) }
        let forward = dailySchedule.expire(now: now, history: history)
        XCTAssertEqual(forward, dailySchedule.expire(now: now, history: history.reversed()))
        XCTAssertEqual(forward.removed, ["r8", "r7", "r6"])
    }
}

final class TagOrderSLABackoffTests: XCTestCase {
    func testSortedTags() {
        let s = schedule(["daily": (day, 7), "weekly": (week, 4), "monthly": (30 * day, 3), "hourly": (hour, 24)])
        XCTAssertEqual(s.sortedTags(["weekly", "manual", "daily", "monthly", "adhoc", "hourly"]),
                       ["adhoc", "manual", "hourly", "daily", "weekly", "monthly"])
        XCTAssertEqual(s.sortedTags(Set<String>()), [])
        let ties = schedule(["b": (day, 1), "a": (day, 1), "B": (day, 1)])
        XCTAssertEqual(ties.sortedTags(["b", "a", "B"]), ["B", "a", "b"])
    }

    func testSLABeforeFirstBackupIsOK() {
        XCTAssertEqual(dailySchedule.sla(now: clock, history: []), .ok)
        XCTAssertEqual(dailySchedule.sla(now: clock, history: [rev("i", utc("2015-01-01 00:00:00"), ["daily"], complete: false)]),
                       .ok)
    }

    func testSLABoundary() {
        let exactly36h = [rev("a", clock.addingTimeInterval(-36 * 3600), ["daily"])]
        XCTAssertEqual(dailySchedule.sla(now: clock, history: exactly36h), .ok)
        let tooOld = [rev("a", clock.addingTimeInterval(-36 * 3600 - 1), ["daily"])]
        XCTAssertEqual(dailySchedule.sla(now: clock, history: tooOld), .tooOld)
        XCTAssertEqual(SLAStatus.ok.rawValue, "OK")
        XCTAssertEqual(SLAStatus.tooOld.rawValue, "TOO OLD")
        // backy check's vector: last time 2015-08-30 07:06:47 UTC → not within SLA.
        XCTAssertEqual(dailySchedule.sla(now: clock, history: [rev("a", utc("2015-08-30 07:06:47"), ["daily"])]), .tooOld)
    }

    func testSLAIgnoresIncompleteAndUsesNewestComplete() {
        let history = [
            rev("old", clock.addingTimeInterval(-3 * 86400), ["daily"]),
            rev("new", clock.addingTimeInterval(-3600), ["daily"]),
            rev("broken", clock.addingTimeInterval(-60), ["daily"], complete: false),
        ]
        XCTAssertEqual(dailySchedule.sla(now: clock, history: history), .ok)
        let onlyOldComplete = [history[0], history[2]]
        XCTAssertEqual(dailySchedule.sla(now: clock, history: onlyOldComplete), .tooOld)
    }

    func testSLAUsesSmallestInterval() {
        let s = schedule(["hourly": (hour, 24), "daily": (day, 7)])
        XCTAssertEqual(s.sla(now: clock, history: [rev("a", clock.addingTimeInterval(-5400), ["daily"])]), .ok)
        XCTAssertEqual(s.sla(now: clock, history: [rev("a", clock.addingTimeInterval(-5401), ["daily"])]), .tooOld)
    }

    func testBackoffSequence() {
        XCTAssertEqual((1...10).map { backoff(failures: $0) },
                       [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600])
        XCTAssertEqual(backoff(failures: 100), 21600)
        XCTAssertEqual(backoff(failures: Int.max), 21600)
        XCTAssertEqual(backoff(failures: 0), 60)
    }
}
