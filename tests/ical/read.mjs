// Reads an iCalendar file with ical.js and node-ical; prints, per parser, each VEVENT's
// UID with its start and end as UTC ISO strings (JSON on stdout). Run from the directory
// where both packages are installed (tests/test_ical_interop.py copies it there).
import fs from "fs";
import ICAL from "ical.js";
import nodeIcal from "node-ical";

const text = fs.readFileSync(process.argv[2], "utf8");

const icaljs = {};
const root = new ICAL.Component(ICAL.parse(text));
for (const tz of root.getAllSubcomponents("vtimezone")) ICAL.TimezoneService.register(tz);
for (const vevent of root.getAllSubcomponents("vevent")) {
  const ev = new ICAL.Event(vevent);
  icaljs[ev.uid] = [ev.startDate.toJSDate().toISOString(), ev.endDate.toJSDate().toISOString()];
}

const nodeical = {};
for (const item of Object.values(nodeIcal.sync.parseICS(text))) {
  if (item.type === "VEVENT") nodeical[item.uid] = [item.start.toISOString(), item.end.toISOString()];
}

process.stdout.write(JSON.stringify({ "ical.js": icaljs, "node-ical": nodeical }));
