// DiskLayout: what a disk image holds, as libblkid reads it: an MBR or GPT
// partition table and the filesystem type of each partition, or one
// filesystem on the whole disk. Every value comes from untrusted bytes:
// partitions that reach past the end of the disk are cut at its end and
// reported, and the number of partitions served is bounded.
import CBlkid
import ChunkStore
import Foundation
import Presentation
#if canImport(Glibc)
import Glibc
#endif

/// One partition, or the whole disk when it has no partition table.
public struct Volume: Sendable, Equatable, Codable {
    /// "part<N>" (N: the partition number) or "disk".
    public var name: String
    public var number: Int?
    /// Byte range in the image.
    public var offset: UInt64
    public var size: UInt64
    /// The filesystem (or other content) type libblkid reports: ext4, vfat,
    /// xfs, swap, LVM2_member, crypto_LUKS, ...; nil when none is recognized.
    public var type: String?
    public var label: String?
    public var uuid: String?
    /// The partition type: an MBR type (0x83) or a GPT type GUID.
    public var partitionType: String?

    public init(name: String, number: Int?, offset: UInt64, size: UInt64, type: String? = nil,
                label: String? = nil, uuid: String? = nil, partitionType: String? = nil) {
        self.name = name
        self.number = number
        self.offset = offset
        self.size = size
        self.type = type
        self.label = label
        self.uuid = uuid
        self.partitionType = partitionType
    }

    public var isExt: Bool { ["ext2", "ext3", "ext4"].contains(type ?? "") }

    /// Content that is never opened, with the reason shown to the operator.
    public var unopenable: String? {
        switch type {
        case "LVM2_member"?: return "LVM2 member, not opened"
        case "crypto_LUKS"?: return "LUKS encrypted, not opened"
        case "swap"?: return "swap space, no files"
        case "linux_raid_member"?, "isw_raid_member"?, "ddf_raid_member"?: return "RAID member, not opened"
        case "zfs_member"?: return "ZFS member, not opened"
        case "BitLocker"?: return "BitLocker encrypted, not opened"
        case nil: return "no filesystem recognized"
        default: return nil
        }
    }
}

public struct DiskLayout: Sendable, Equatable, Codable {
    /// "gpt", "dos" (MBR), or nil for no partition table.
    public var table: String?
    public var volumes: [Volume]
    /// Things wrong with the table (a drill fails on any of them).
    public var problems: [String]

    public init(table: String?, volumes: [Volume], problems: [String]) {
        self.table = table
        self.volumes = volumes
        self.problems = problems
    }

    /// At most this many partitions are served.
    public static let maxPartitions = 128

    /// Probes the image readable at `path` (a file or a FUSE view of one),
    /// `size` bytes long.
    public static func probe(path: String, size: UInt64) throws -> DiskLayout {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw BackyError.posix("cannot open \(path)") }
        defer { Glibc.close(fd) }
        var problems: [String] = []
        var volumes: [Volume] = []
        var table: String?

        guard let pr = blkid_new_probe() else { throw BackyError(.other, "libblkid: cannot create a probe") }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, fd, 0, blkid_loff_t(size)) == 0 else {
            throw BackyError(.io, "libblkid cannot read \(path)")
        }
        blkid_probe_enable_superblocks(pr, 0)
        blkid_probe_enable_partitions(pr, 1)
        blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS)
        let rc = blkid_do_safeprobe(pr)
        if rc == -2 {
            problems.append("ambiguous partition table signatures")
        } else if rc < 0 {
            throw BackyError.posix("libblkid cannot read the partition table of \(path)")
        }
        if rc == 0, let list = blkid_probe_get_partitions(pr) {
            if let t = blkid_partlist_get_table(list), let ty = blkid_parttable_get_type(t) {
                table = String(cString: ty)
            }
            let n = blkid_partlist_numof_partitions(list)
            for k in 0..<max(0, n) {
                guard let par = blkid_partlist_get_partition(list, k) else { continue }
                let number = Int(blkid_partition_get_partno(par))
                let start = Int64(blkid_partition_get_start(par))
                let sectors = Int64(blkid_partition_get_size(par))
                if blkid_partition_is_extended(par) != 0 { continue }
                guard start >= 0, sectors > 0, start <= Int64.max / 512, sectors <= Int64.max / 512 else {
                    problems.append("partition \(number) has an impossible start or size")
                    continue
                }
                let offset = UInt64(start) * 512
                var length = UInt64(sectors) * 512
                if offset >= size {
                    problems.append("partition \(number) starts at byte \(offset), beyond the end of the disk (\(size) bytes)")
                    continue
                }
                if length > size - offset {
                    problems.append("partition \(number) ends at byte \(offset + length), beyond the end of the disk (\(size) bytes); cut to the disk's end")
                    length = size - offset
                }
                if volumes.count >= maxPartitions {
                    problems.append("more than \(maxPartitions) partitions; the rest are not shown")
                    break
                }
                var ptype: String?
                if let s = blkid_partition_get_type_string(par) {
                    ptype = String(cString: s)
                } else {
                    ptype = String(format: "0x%02x", blkid_partition_get_type(par))
                }
                volumes.append(Volume(name: "part\(number)", number: number, offset: offset, size: length,
                                      partitionType: ptype))
            }
            // Partition numbers come from the table: two entries with one
            // number would make two views with one name.
            var seen = Set<String>()
            volumes = volumes.filter { v in
                if seen.insert(v.name).inserted { return true }
                problems.append("partition number \(v.number ?? 0) appears twice; the second is not shown")
                return false
            }
        }
        if table == nil {
            volumes = [Volume(name: "disk", number: nil, offset: 0, size: size)]
        }
        for k in volumes.indices {
            let c = probeContent(fd: fd, offset: volumes[k].offset, size: volumes[k].size)
            volumes[k].type = c.type
            volumes[k].label = c.label
            volumes[k].uuid = c.uuid
            if let p = c.problem { problems.append("\(volumes[k].name): \(p)") }
        }
        return DiskLayout(table: table, volumes: volumes, problems: problems)
    }

    /// The filesystem (or other) signature of one byte range.
    static func probeContent(fd: Int32, offset: UInt64, size: UInt64) -> (type: String?, label: String?, uuid: String?, problem: String?) {
        guard let pr = blkid_new_probe() else { return (nil, nil, nil, "libblkid: cannot create a probe") }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, fd, blkid_loff_t(offset), blkid_loff_t(size)) == 0 else {
            return (nil, nil, nil, "libblkid cannot read it")
        }
        blkid_probe_enable_partitions(pr, 0)
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_USAGE)
        let rc = blkid_do_safeprobe(pr)
        if rc == -2 { return (nil, nil, nil, "ambiguous filesystem signatures") }
        if rc != 0 { return (nil, nil, nil, nil) }
        func value(_ name: String) -> String? {
            var data: UnsafePointer<CChar>?
            var len = 0
            guard blkid_probe_lookup_value(pr, name, &data, &len) == 0, let d = data else { return nil }
            // Labels are the filesystem's bytes: keep them printable.
            let s = String(decoding: UnsafeRawBufferPointer(start: d, count: strnlen(d, len)), as: UTF8.self)
            let clean = String(s.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? "?" : Character($0) }).prefix(64)
            return clean.isEmpty ? nil : String(clean)
        }
        return (value("TYPE"), value("LABEL"), value("UUID"), nil)
    }

    /// One line per volume for `backy mount`, `files` and partitions.txt:
    /// view, size, type and label, and `opened[name]` (where its files are,
    /// or why not).
    public func describe(imageSize: UInt64, opened: [String: String]) -> [String] {
        var rows: [[String]] = []
        let what = table.map { "\($0 == "dos" ? "MBR" : $0.uppercased()) partition table, \(volumes.count) partition\(volumes.count == 1 ? "" : "s")" }
            ?? "no partition table"
        rows.append(["disk.raw", ByteFormat.flexible(Int64(imageSize)), what])
        for v in volumes {
            var type = v.type ?? "-"
            if let l = v.label { type += " \"\(l)\"" }
            rows.append([v.name == "disk" ? "disk/" : v.name + ".raw", ByteFormat.flexible(Int64(v.size)), type,
                         opened[v.name] ?? v.unopenable ?? "not opened"])
        }
        let w0 = rows.map { $0[0].count }.max() ?? 0
        let w1 = rows.map { $0[1].count }.max() ?? 0
        let w2 = rows.dropFirst().map { $0[2].count }.max() ?? 0
        var lines = rows.map { r -> String in
            var l = r[0].padding(toLength: w0, withPad: " ", startingAt: 0) + "  "
            l += String(repeating: " ", count: w1 - r[1].count) + r[1] + "  "
            if r.count == 3 { return l + r[2] }
            return l + r[2].padding(toLength: w2, withPad: " ", startingAt: 0) + "  " + r[3]
        }
        for p in problems { lines.append("problem: \(p)") }
        return lines
    }
}
