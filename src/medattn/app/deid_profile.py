"""DICOM PS3.15 Annex E, table E.1-1: the Basic Application Level Confidentiality
Profile, as data (the "Basic Prof." column, DICOM 2023 edition).

:data:`BASIC_PROFILE` maps each listed attribute tag to its action code:

* ``D`` replace with a non-zero-length dummy value consistent with the VR;
* ``Z`` replace with a zero-length value (or a dummy value);
* ``X`` remove;
* ``U`` replace with a non-zero-length UID, the same replacement for the same
  original UID;
* combined codes (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``) leave the
  choice to the application as long as the object stays conforming;
  :func:`medattn.app.deid.resolve_action` says which one medattn takes.

The repeating groups (curves 50xx, overlays 60xx) are in
:data:`REPEATING_GROUPS`; private attributes are removed as a class (table
E.1-1 lists them as "Private attributes: X"). The retain/clean options of the
table (``K``, ``C``) are not applied: the application keeps no dates, devices,
institutions or descriptions.
"""

from __future__ import annotations

#: Action codes used in :data:`BASIC_PROFILE` (table E.1-1, "Basic Prof." column).
ACTIONS = ("D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

#: Repeating groups (``group & 0xFF00``) -> action. The table lists Curve Data (50xx,xxxx), Overlay Data
#: (60xx,3000) and Overlay Comments (60xx,4000); the rest of an overlay is meaningless without its data,
#: so the whole 60xx group goes.
REPEATING_GROUPS: dict[int, str] = {
    0x5000: "X",  # curves
    0x6000: "X",  # overlays
}

#: (group << 16 | element) -> action code, one row per attribute of table E.1-1.
BASIC_PROFILE: dict[int, str] = {
    0x00001000: "X",  # (0000,1000) Affected SOP Instance UID
    0x00001001: "U",  # (0000,1001) Requested SOP Instance UID
    0x00020003: "U",  # (0002,0003) Media Storage SOP Instance UID
    0x00041511: "U",  # (0004,1511) Referenced SOP Instance UID in File
    0x00080012: "X/D",  # (0008,0012) Instance Creation Date
    0x00080013: "X/Z/D",  # (0008,0013) Instance Creation Time
    0x00080014: "U",  # (0008,0014) Instance Creator UID
    0x00080015: "X",  # (0008,0015) Instance Coercion DateTime
    0x00080017: "U",  # (0008,0017) Acquisition UID
    0x00080018: "U",  # (0008,0018) SOP Instance UID
    0x00080019: "U",  # (0008,0019) Pyramid UID
    0x00080020: "Z",  # (0008,0020) Study Date
    0x00080021: "X/D",  # (0008,0021) Series Date
    0x00080022: "X/Z",  # (0008,0022) Acquisition Date
    0x00080023: "Z/D",  # (0008,0023) Content Date
    0x00080024: "X",  # (0008,0024) Overlay Date
    0x00080025: "X",  # (0008,0025) Curve Date
    0x0008002A: "X/Z/D",  # (0008,002A) Acquisition DateTime
    0x00080030: "Z",  # (0008,0030) Study Time
    0x00080031: "X/D",  # (0008,0031) Series Time
    0x00080032: "X/Z",  # (0008,0032) Acquisition Time
    0x00080033: "Z/D",  # (0008,0033) Content Time
    0x00080034: "X",  # (0008,0034) Overlay Time
    0x00080035: "X",  # (0008,0035) Curve Time
    0x00080050: "Z",  # (0008,0050) Accession Number
    0x00080054: "X",  # (0008,0054) Retrieve AE Title
    0x00080055: "X",  # (0008,0055) Station AE Title
    0x00080058: "U",  # (0008,0058) Failed SOP Instance UID List
    0x00080080: "X/Z/D",  # (0008,0080) Institution Name
    0x00080081: "X",  # (0008,0081) Institution Address
    0x00080082: "X/Z/D",  # (0008,0082) Institution Code Sequence
    0x00080090: "Z",  # (0008,0090) Referring Physician's Name
    0x00080092: "X",  # (0008,0092) Referring Physician's Address
    0x00080094: "X",  # (0008,0094) Referring Physician's Telephone Numbers
    0x00080096: "X",  # (0008,0096) Referring Physician Identification Sequence
    0x0008009C: "Z",  # (0008,009C) Consulting Physician's Name
    0x0008009D: "X",  # (0008,009D) Consulting Physician Identification Sequence
    0x00080106: "D",  # (0008,0106) Context Group Version
    0x00080107: "D",  # (0008,0107) Context Group Local Version
    0x00080201: "X",  # (0008,0201) Timezone Offset From UTC
    0x00081000: "X",  # (0008,1000) Network ID
    0x00081010: "X/Z/D",  # (0008,1010) Station Name
    0x00081030: "X",  # (0008,1030) Study Description
    0x0008103E: "X",  # (0008,103E) Series Description
    0x00081040: "X",  # (0008,1040) Institutional Department Name
    0x00081041: "X",  # (0008,1041) Institutional Department Type Code Sequence
    0x00081048: "X",  # (0008,1048) Physician(s) of Record
    0x00081049: "X",  # (0008,1049) Physician(s) of Record Identification Sequence
    0x00081050: "X",  # (0008,1050) Performing Physician's Name
    0x00081052: "X",  # (0008,1052) Performing Physician Identification Sequence
    0x00081060: "X",  # (0008,1060) Name of Physician(s) Reading Study
    0x00081062: "X",  # (0008,1062) Physician(s) Reading Study Identification Sequence
    0x00081070: "X/Z/D",  # (0008,1070) Operators' Name
    0x00081072: "X/D",  # (0008,1072) Operator Identification Sequence
    0x00081080: "X",  # (0008,1080) Admitting Diagnoses Description
    0x00081084: "X",  # (0008,1084) Admitting Diagnoses Code Sequence
    0x00081088: "X",  # (0008,1088) Pyramid Description
    0x00081110: "X/Z",  # (0008,1110) Referenced Study Sequence
    0x00081111: "X/Z/D",  # (0008,1111) Referenced Performed Procedure Step Sequence
    0x00081120: "X",  # (0008,1120) Referenced Patient Sequence
    0x00081140: "X/Z/U*",  # (0008,1140) Referenced Image Sequence
    0x00081155: "U",  # (0008,1155) Referenced SOP Instance UID
    0x00081195: "U",  # (0008,1195) Transaction UID
    0x00082111: "X",  # (0008,2111) Derivation Description
    0x00082112: "X/Z/U*",  # (0008,2112) Source Image Sequence
    0x00083010: "U",  # (0008,3010) Irradiation Event UID
    0x00084000: "X",  # (0008,4000) Identifying Comments
    0x00100010: "Z",  # (0010,0010) Patient's Name
    0x00100020: "Z",  # (0010,0020) Patient ID
    0x00100021: "X",  # (0010,0021) Issuer of Patient ID
    0x00100030: "Z",  # (0010,0030) Patient's Birth Date
    0x00100032: "X",  # (0010,0032) Patient's Birth Time
    0x00100040: "Z",  # (0010,0040) Patient's Sex
    0x00100050: "X",  # (0010,0050) Patient's Insurance Plan Code Sequence
    0x00100101: "X",  # (0010,0101) Patient's Primary Language Code Sequence
    0x00100102: "X",  # (0010,0102) Patient's Primary Language Modifier Code Sequence
    0x00101000: "X",  # (0010,1000) Other Patient IDs
    0x00101001: "X",  # (0010,1001) Other Patient Names
    0x00101002: "X",  # (0010,1002) Other Patient IDs Sequence
    0x00101005: "X",  # (0010,1005) Patient's Birth Name
    0x00101010: "X",  # (0010,1010) Patient's Age
    0x00101020: "X",  # (0010,1020) Patient's Size
    0x00101030: "X",  # (0010,1030) Patient's Weight
    0x00101040: "X",  # (0010,1040) Patient's Address
    0x00101050: "X",  # (0010,1050) Insurance Plan Identification
    0x00101060: "X",  # (0010,1060) Patient's Mother's Birth Name
    0x00101080: "X",  # (0010,1080) Military Rank
    0x00101081: "X",  # (0010,1081) Branch of Service
    0x00101090: "X",  # (0010,1090) Medical Record Locator
    0x00101100: "X",  # (0010,1100) Referenced Patient Photo Sequence
    0x00102000: "X",  # (0010,2000) Medical Alerts
    0x00102110: "X",  # (0010,2110) Allergies
    0x00102150: "X",  # (0010,2150) Country of Residence
    0x00102152: "X",  # (0010,2152) Region of Residence
    0x00102154: "X",  # (0010,2154) Patient's Telephone Numbers
    0x00102155: "X",  # (0010,2155) Patient's Telecom Information
    0x00102160: "X",  # (0010,2160) Ethnic Group
    0x00102180: "X",  # (0010,2180) Occupation
    0x001021A0: "X",  # (0010,21A0) Smoking Status
    0x001021B0: "X",  # (0010,21B0) Additional Patient History
    0x001021C0: "X",  # (0010,21C0) Pregnancy Status
    0x001021D0: "X",  # (0010,21D0) Last Menstrual Date
    0x001021F0: "X",  # (0010,21F0) Patient's Religious Preference
    0x00102203: "X/Z",  # (0010,2203) Patient's Sex Neutered
    0x00102297: "X",  # (0010,2297) Responsible Person
    0x00102299: "X",  # (0010,2299) Responsible Organization
    0x00104000: "X",  # (0010,4000) Patient Comments
    0x00120010: "D",  # (0012,0010) Clinical Trial Sponsor Name
    0x00120020: "D",  # (0012,0020) Clinical Trial Protocol ID
    0x00120021: "Z",  # (0012,0021) Clinical Trial Protocol Name
    0x00120030: "Z",  # (0012,0030) Clinical Trial Site ID
    0x00120031: "Z",  # (0012,0031) Clinical Trial Site Name
    0x00120040: "D",  # (0012,0040) Clinical Trial Subject ID
    0x00120042: "D",  # (0012,0042) Clinical Trial Subject Reading ID
    0x00120050: "Z",  # (0012,0050) Clinical Trial Time Point ID
    0x00120051: "X",  # (0012,0051) Clinical Trial Time Point Description
    0x00120060: "Z",  # (0012,0060) Clinical Trial Coordinating Center Name
    0x00120071: "X",  # (0012,0071) Clinical Trial Series ID
    0x00120072: "X",  # (0012,0072) Clinical Trial Series Description
    0x00120081: "D",  # (0012,0081) Clinical Trial Protocol Ethics Committee Name
    0x00120082: "X",  # (0012,0082) Clinical Trial Protocol Ethics Committee Approval Number
    0x00120086: "X",  # (0012,0086) Ethics Committee Approval Effectiveness Start Date
    0x00120087: "X",  # (0012,0087) Ethics Committee Approval Effectiveness End Date
    0x0014407C: "X",  # (0014,407C) Calibration Time
    0x0014407E: "X",  # (0014,407E) Calibration Date
    0x0016002B: "X",  # (0016,002B) Maker Note
    0x0016004B: "X",  # (0016,004B) Device Setting Description
    0x0016004D: "X",  # (0016,004D) Camera Owner Name
    0x0016004E: "X",  # (0016,004E) Lens Specification
    0x0016004F: "X",  # (0016,004F) Lens Make
    0x00160050: "X",  # (0016,0050) Lens Model
    0x00160051: "X",  # (0016,0051) Lens Serial Number
    0x00160070: "X",  # (0016,0070) GPS Version ID
    0x00160071: "X",  # (0016,0071) GPS Latitude Ref
    0x00160072: "X",  # (0016,0072) GPS Latitude
    0x00160073: "X",  # (0016,0073) GPS Longitude Ref
    0x00160074: "X",  # (0016,0074) GPS Longitude
    0x00160075: "X",  # (0016,0075) GPS Altitude Ref
    0x00160076: "X",  # (0016,0076) GPS Altitude
    0x00160077: "X",  # (0016,0077) GPS Time Stamp
    0x00160078: "X",  # (0016,0078) GPS Satellites
    0x00160079: "X",  # (0016,0079) GPS Status
    0x0016007A: "X",  # (0016,007A) GPS Measure Mode
    0x0016007B: "X",  # (0016,007B) GPS DOP
    0x0016007C: "X",  # (0016,007C) GPS Speed Ref
    0x0016007D: "X",  # (0016,007D) GPS Speed
    0x0016007E: "X",  # (0016,007E) GPS Track Ref
    0x0016007F: "X",  # (0016,007F) GPS Track
    0x00160080: "X",  # (0016,0080) GPS Img Direction Ref
    0x00160081: "X",  # (0016,0081) GPS Img Direction
    0x00160082: "X",  # (0016,0082) GPS Map Datum
    0x00160083: "X",  # (0016,0083) GPS Dest Latitude Ref
    0x00160084: "X",  # (0016,0084) GPS Dest Latitude
    0x00160085: "X",  # (0016,0085) GPS Dest Longitude Ref
    0x00160086: "X",  # (0016,0086) GPS Dest Longitude
    0x00160087: "X",  # (0016,0087) GPS Dest Bearing Ref
    0x00160088: "X",  # (0016,0088) GPS Dest Bearing
    0x00160089: "X",  # (0016,0089) GPS Dest Distance Ref
    0x0016008A: "X",  # (0016,008A) GPS Dest Distance
    0x0016008B: "X",  # (0016,008B) GPS Processing Method
    0x0016008C: "X",  # (0016,008C) GPS Area Information
    0x0016008D: "X",  # (0016,008D) GPS Date Stamp
    0x0016008E: "X",  # (0016,008E) GPS Differential
    0x00180010: "Z/D",  # (0018,0010) Contrast/Bolus Agent
    0x00180027: "X",  # (0018,0027) Intervention Drug Stop Time
    0x00180035: "X",  # (0018,0035) Intervention Drug Start Time
    0x00181000: "X/Z/D",  # (0018,1000) Device Serial Number
    0x00181002: "U",  # (0018,1002) Device UID
    0x00181004: "X",  # (0018,1004) Plate ID
    0x00181005: "X",  # (0018,1005) Generator ID
    0x00181007: "X",  # (0018,1007) Cassette ID
    0x00181008: "X",  # (0018,1008) Gantry ID
    0x00181009: "X",  # (0018,1009) Unique Device Identifier
    0x0018100A: "X",  # (0018,100A) UDI Sequence
    0x0018100B: "U",  # (0018,100B) Manufacturer's Device Class UID
    0x00181012: "X",  # (0018,1012) Date of Secondary Capture
    0x00181014: "X",  # (0018,1014) Time of Secondary Capture
    0x00181030: "X/D",  # (0018,1030) Protocol Name
    0x00181042: "X",  # (0018,1042) Contrast/Bolus Start Time
    0x00181043: "X",  # (0018,1043) Contrast/Bolus Stop Time
    0x00181072: "X",  # (0018,1072) Radiopharmaceutical Start Time
    0x00181073: "X",  # (0018,1073) Radiopharmaceutical Stop Time
    0x00181078: "X",  # (0018,1078) Radiopharmaceutical Start DateTime
    0x00181079: "X",  # (0018,1079) Radiopharmaceutical Stop DateTime
    0x001811BB: "D",  # (0018,11BB) Acquisition Field of View Label
    0x00181200: "X",  # (0018,1200) Date of Last Calibration
    0x00181201: "X",  # (0018,1201) Time of Last Calibration
    0x00181202: "X",  # (0018,1202) DateTime of Last Calibration
    0x00181203: "Z",  # (0018,1203) Calibration DateTime
    0x00181204: "X",  # (0018,1204) Date of Manufacture
    0x00181205: "X",  # (0018,1205) Date of Installation
    0x00181400: "X/D",  # (0018,1400) Acquisition Device Processing Description
    0x00182042: "U",  # (0018,2042) Target UID
    0x00184000: "X",  # (0018,4000) Acquisition Comments
    0x00185011: "X",  # (0018,5011) Transducer Identification Sequence
    0x0018700A: "X/D",  # (0018,700A) Detector ID
    0x0018700C: "X/D",  # (0018,700C) Date of Last Detector Calibration
    0x0018700E: "X/D",  # (0018,700E) Time of Last Detector Calibration
    0x00189074: "D",  # (0018,9074) Frame Acquisition DateTime
    0x00189151: "D",  # (0018,9151) Frame Reference DateTime
    0x00189185: "X",  # (0018,9185) Respiratory Motion Compensation Technique Description
    0x00189367: "D",  # (0018,9367) X-Ray Source ID
    0x00189369: "D",  # (0018,9369) Source Start DateTime
    0x0018936A: "D",  # (0018,936A) Source End DateTime
    0x00189371: "D",  # (0018,9371) X-Ray Detector ID
    0x00189373: "X",  # (0018,9373) X-Ray Detector Label
    0x0018937B: "X",  # (0018,937B) Multi-energy Acquisition Description
    0x0018937F: "X",  # (0018,937F) Decomposition Description
    0x00189424: "X",  # (0018,9424) Acquisition Protocol Description
    0x00189516: "X/D",  # (0018,9516) Start Acquisition DateTime
    0x00189517: "X/D",  # (0018,9517) End Acquisition DateTime
    0x00189623: "D",  # (0018,9623) Functional Sync Pulse
    0x00189701: "D",  # (0018,9701) Decay Correction DateTime
    0x00189804: "D",  # (0018,9804) Exclusion Start DateTime
    0x00189919: "Z/D",  # (0018,9919) Instruction Performed DateTime
    0x00189937: "X",  # (0018,9937) Requested Series Description
    0x0018A002: "X",  # (0018,A002) Contribution DateTime
    0x0018A003: "X",  # (0018,A003) Contribution Description
    0x0020000D: "U",  # (0020,000D) Study Instance UID
    0x0020000E: "U",  # (0020,000E) Series Instance UID
    0x00200010: "Z",  # (0020,0010) Study ID
    0x00200027: "X",  # (0020,0027) Pyramid Label
    0x00200052: "U",  # (0020,0052) Frame of Reference UID
    0x00200200: "U",  # (0020,0200) Synchronization Frame of Reference UID
    0x00203401: "X",  # (0020,3401) Modifying Device ID
    0x00203403: "X",  # (0020,3403) Modified Image Date
    0x00203405: "X",  # (0020,3405) Modified Image Time
    0x00203406: "X",  # (0020,3406) Modified Image Description
    0x00204000: "X",  # (0020,4000) Image Comments
    0x00209158: "X",  # (0020,9158) Frame Comments
    0x00209161: "U",  # (0020,9161) Concatenation UID
    0x00209164: "U",  # (0020,9164) Dimension Organization UID
    0x00281199: "U",  # (0028,1199) Palette Color Lookup Table UID
    0x00281214: "U",  # (0028,1214) Large Palette Color Lookup Table UID
    0x00284000: "X",  # (0028,4000) Image Presentation Comments
    0x00320012: "X",  # (0032,0012) Study ID Issuer
    0x00320032: "X",  # (0032,0032) Study Verified Date
    0x00320033: "X",  # (0032,0033) Study Verified Time
    0x00320034: "X",  # (0032,0034) Study Read Date
    0x00320035: "X",  # (0032,0035) Study Read Time
    0x00321000: "X",  # (0032,1000) Scheduled Study Start Date
    0x00321001: "X",  # (0032,1001) Scheduled Study Start Time
    0x00321010: "X",  # (0032,1010) Scheduled Study Stop Date
    0x00321011: "X",  # (0032,1011) Scheduled Study Stop Time
    0x00321020: "X",  # (0032,1020) Scheduled Study Location
    0x00321021: "X",  # (0032,1021) Scheduled Study Location AE Title
    0x00321030: "X",  # (0032,1030) Reason for Study
    0x00321032: "X",  # (0032,1032) Requesting Physician
    0x00321033: "X",  # (0032,1033) Requesting Service
    0x00321040: "X",  # (0032,1040) Study Arrival Date
    0x00321041: "X",  # (0032,1041) Study Arrival Time
    0x00321050: "X",  # (0032,1050) Study Completion Date
    0x00321051: "X",  # (0032,1051) Study Completion Time
    0x00321060: "X/Z",  # (0032,1060) Requested Procedure Description
    0x00321066: "X",  # (0032,1066) Reason for Visit
    0x00321067: "X",  # (0032,1067) Reason for Visit Code Sequence
    0x00321070: "X",  # (0032,1070) Requested Contrast Agent
    0x00324000: "X",  # (0032,4000) Study Comments
    0x00340001: "D",  # (0034,0001) Flow Identifier Sequence
    0x00340002: "D",  # (0034,0002) Flow Identifier
    0x00340005: "D",  # (0034,0005) Source Identifier
    0x00340007: "D",  # (0034,0007) Frame Origin Timestamp
    0x00380004: "X",  # (0038,0004) Referenced Patient Alias Sequence
    0x00380010: "X",  # (0038,0010) Admission ID
    0x00380011: "X",  # (0038,0011) Issuer of Admission ID
    0x00380014: "X",  # (0038,0014) Issuer of Admission ID Sequence
    0x0038001A: "X",  # (0038,001A) Scheduled Admission Date
    0x0038001B: "X",  # (0038,001B) Scheduled Admission Time
    0x0038001C: "X",  # (0038,001C) Scheduled Discharge Date
    0x0038001D: "X",  # (0038,001D) Scheduled Discharge Time
    0x0038001E: "X",  # (0038,001E) Scheduled Patient Institution Residence
    0x00380020: "X",  # (0038,0020) Admitting Date
    0x00380021: "X",  # (0038,0021) Admitting Time
    0x00380030: "X",  # (0038,0030) Discharge Date
    0x00380032: "X",  # (0038,0032) Discharge Time
    0x00380040: "X",  # (0038,0040) Discharge Diagnosis Description
    0x00380050: "X",  # (0038,0050) Special Needs
    0x00380060: "X",  # (0038,0060) Service Episode ID
    0x00380061: "X",  # (0038,0061) Issuer of Service Episode ID
    0x00380062: "X",  # (0038,0062) Service Episode Description
    0x00380064: "X",  # (0038,0064) Issuer of Service Episode ID Sequence
    0x00380300: "X",  # (0038,0300) Current Patient Location
    0x00380400: "X",  # (0038,0400) Patient's Institution Residence
    0x00380500: "X",  # (0038,0500) Patient State
    0x00384000: "X",  # (0038,4000) Visit Comments
    0x003A0310: "U",  # (003A,0310) Multiplex Group UID
    0x003A0314: "D",  # (003A,0314) Impedance Measurement DateTime
    0x003A0329: "X",  # (003A,0329) Waveform Filter Description
    0x003A032B: "X",  # (003A,032B) Filter Lookup Table Description
    0x00400001: "X",  # (0040,0001) Scheduled Station AE Title
    0x00400002: "X",  # (0040,0002) Scheduled Procedure Step Start Date
    0x00400003: "X",  # (0040,0003) Scheduled Procedure Step Start Time
    0x00400004: "X",  # (0040,0004) Scheduled Procedure Step End Date
    0x00400005: "X",  # (0040,0005) Scheduled Procedure Step End Time
    0x00400006: "X",  # (0040,0006) Scheduled Performing Physician's Name
    0x00400007: "X",  # (0040,0007) Scheduled Procedure Step Description
    0x00400009: "X",  # (0040,0009) Scheduled Procedure Step ID
    0x0040000B: "X",  # (0040,000B) Scheduled Performing Physician Identification Sequence
    0x00400010: "X",  # (0040,0010) Scheduled Station Name
    0x00400011: "X",  # (0040,0011) Scheduled Procedure Step Location
    0x00400012: "X",  # (0040,0012) Pre-Medication
    0x00400241: "X",  # (0040,0241) Performed Station AE Title
    0x00400242: "X",  # (0040,0242) Performed Station Name
    0x00400243: "X",  # (0040,0243) Performed Location
    0x00400244: "X",  # (0040,0244) Performed Procedure Step Start Date
    0x00400245: "X",  # (0040,0245) Performed Procedure Step Start Time
    0x00400250: "X",  # (0040,0250) Performed Procedure Step End Date
    0x00400251: "X",  # (0040,0251) Performed Procedure Step End Time
    0x00400253: "X",  # (0040,0253) Performed Procedure Step ID
    0x00400254: "X",  # (0040,0254) Performed Procedure Step Description
    0x00400275: "X",  # (0040,0275) Request Attributes Sequence
    0x00400280: "X",  # (0040,0280) Comments on the Performed Procedure Step
    0x00400310: "X",  # (0040,0310) Comments on Radiation Dose
    0x0040050A: "X",  # (0040,050A) Specimen Accession Number
    0x00400512: "D",  # (0040,0512) Container Identifier
    0x00400513: "Z",  # (0040,0513) Issuer of the Container Identifier Sequence
    0x0040051A: "X",  # (0040,051A) Container Description
    0x00400551: "D",  # (0040,0551) Specimen Identifier
    0x00400554: "U",  # (0040,0554) Specimen UID
    0x00400555: "X/Z",  # (0040,0555) Acquisition Context Sequence
    0x00400562: "Z",  # (0040,0562) Issuer of the Specimen Identifier Sequence
    0x00400600: "X",  # (0040,0600) Specimen Short Description
    0x00400602: "X",  # (0040,0602) Specimen Detailed Description
    0x00400610: "Z",  # (0040,0610) Specimen Preparation Sequence
    0x004006FA: "X",  # (0040,06FA) Slide Identifier
    0x00401001: "X",  # (0040,1001) Requested Procedure ID
    0x00401002: "X",  # (0040,1002) Reason for the Requested Procedure
    0x00401004: "X",  # (0040,1004) Patient Transport Arrangements
    0x00401005: "X",  # (0040,1005) Requested Procedure Location
    0x0040100A: "X",  # (0040,100A) Reason for Requested Procedure Code Sequence
    0x00401010: "X",  # (0040,1010) Names of Intended Recipients of Results
    0x00401011: "X",  # (0040,1011) Intended Recipients of Results Identification Sequence
    0x00401101: "D",  # (0040,1101) Person Identification Code Sequence
    0x00401102: "X",  # (0040,1102) Person's Address
    0x00401103: "X",  # (0040,1103) Person's Telephone Numbers
    0x00401104: "X",  # (0040,1104) Person's Telecom Information
    0x00401400: "X",  # (0040,1400) Requested Procedure Comments
    0x00402001: "X",  # (0040,2001) Reason for the Imaging Service Request
    0x00402004: "X",  # (0040,2004) Issue Date of Imaging Service Request
    0x00402005: "X",  # (0040,2005) Issue Time of Imaging Service Request
    0x00402008: "X",  # (0040,2008) Order Entered By
    0x00402009: "X",  # (0040,2009) Order Enterer's Location
    0x00402010: "X",  # (0040,2010) Order Callback Phone Number
    0x00402011: "X",  # (0040,2011) Order Callback Telecom Information
    0x00402016: "Z",  # (0040,2016) Placer Order Number / Imaging Service Request
    0x00402017: "Z",  # (0040,2017) Filler Order Number / Imaging Service Request
    0x00402400: "X",  # (0040,2400) Imaging Service Request Comments
    0x00403001: "X",  # (0040,3001) Confidentiality Constraint on Patient Data Description
    0x00404005: "X",  # (0040,4005) Scheduled Procedure Step Start DateTime
    0x00404008: "X",  # (0040,4008) Scheduled Procedure Step Expiration DateTime
    0x00404010: "X",  # (0040,4010) Scheduled Procedure Step Modification DateTime
    0x00404011: "X",  # (0040,4011) Expected Completion DateTime
    0x00404023: "U",  # (0040,4023) Referenced General Purpose Scheduled Procedure Step Transaction UID
    0x00404025: "X",  # (0040,4025) Scheduled Station Name Code Sequence
    0x00404027: "X",  # (0040,4027) Scheduled Station Geographic Location Code Sequence
    0x00404028: "X",  # (0040,4028) Performed Station Name Code Sequence
    0x00404030: "X",  # (0040,4030) Performed Station Geographic Location Code Sequence
    0x00404034: "X",  # (0040,4034) Scheduled Human Performers Sequence
    0x00404035: "X",  # (0040,4035) Actual Human Performers Sequence
    0x00404036: "X",  # (0040,4036) Human Performer's Organization
    0x00404037: "X",  # (0040,4037) Human Performer's Name
    0x00404050: "X",  # (0040,4050) Performed Procedure Step Start DateTime
    0x00404051: "X",  # (0040,4051) Performed Procedure Step End DateTime
    0x00404052: "X",  # (0040,4052) Procedure Step Cancellation DateTime
    0x0040A023: "X",  # (0040,A023) Findings Group Recording Date (Trial)
    0x0040A024: "X",  # (0040,A024) Findings Group Recording Time (Trial)
    0x0040A027: "D",  # (0040,A027) Verifying Organization
    0x0040A030: "D",  # (0040,A030) Verification DateTime
    0x0040A032: "X/D",  # (0040,A032) Observation DateTime
    0x0040A033: "X",  # (0040,A033) Observation Start DateTime
    0x0040A073: "D",  # (0040,A073) Verifying Observer Sequence
    0x0040A075: "D",  # (0040,A075) Verifying Observer Name
    0x0040A078: "X",  # (0040,A078) Author Observer Sequence
    0x0040A07A: "X",  # (0040,A07A) Participant Sequence
    0x0040A07C: "X",  # (0040,A07C) Custodial Organization Sequence
    0x0040A082: "Z",  # (0040,A082) Participation DateTime
    0x0040A088: "Z",  # (0040,A088) Verifying Observer Identification Code Sequence
    0x0040A110: "X",  # (0040,A110) Date of Document or Verbal Transaction (Trial)
    0x0040A112: "X",  # (0040,A112) Time of Document Creation or Verbal Transaction (Trial)
    0x0040A120: "D",  # (0040,A120) DateTime
    0x0040A121: "D",  # (0040,A121) Date
    0x0040A122: "D",  # (0040,A122) Time
    0x0040A123: "D",  # (0040,A123) Person Name
    0x0040A124: "U",  # (0040,A124) UID
    0x0040A13A: "D",  # (0040,A13A) Referenced DateTime
    0x0040A171: "U",  # (0040,A171) Observation UID
    0x0040A172: "U",  # (0040,A172) Referenced Observation UID (Trial)
    0x0040A192: "X",  # (0040,A192) Observation Date (Trial)
    0x0040A193: "X",  # (0040,A193) Observation Time (Trial)
    0x0040A307: "X",  # (0040,A307) Current Observer (Trial)
    0x0040A352: "X",  # (0040,A352) Verbal Source (Trial)
    0x0040A353: "X",  # (0040,A353) Address (Trial)
    0x0040A354: "X",  # (0040,A354) Telephone Number (Trial)
    0x0040A358: "X",  # (0040,A358) Verbal Source Identifier Code Sequence (Trial)
    0x0040A402: "U",  # (0040,A402) Observation Subject UID (Trial)
    0x0040A730: "D",  # (0040,A730) Content Sequence
    0x0040DB06: "X",  # (0040,DB06) Template Version
    0x0040DB07: "X",  # (0040,DB07) Template Local Version
    0x0040DB0C: "U",  # (0040,DB0C) Template Extension Organization UID
    0x0040DB0D: "U",  # (0040,DB0D) Template Extension Creator UID
    0x0040E004: "X",  # (0040,E004) HL7 Document Effective Time
    0x00420011: "D",  # (0042,0011) Encapsulated Document
    0x00440004: "X",  # (0044,0004) Approval Status DateTime
    0x0044000B: "X",  # (0044,000B) Product Expiration DateTime
    0x00440010: "X",  # (0044,0010) Substance Administration DateTime
    0x00440104: "D",  # (0044,0104) Assertion DateTime
    0x00440105: "X",  # (0044,0105) Assertion Expiration DateTime
    0x0050001B: "X",  # (0050,001B) Container Component ID
    0x00500020: "X",  # (0050,0020) Device Description
    0x00500021: "X",  # (0050,0021) Long Device Description
    0x00620021: "U",  # (0062,0021) Tracking UID
    0x00640003: "U",  # (0064,0003) Source Frame of Reference UID
    0x00686226: "D",  # (0068,6226) Effective DateTime
    0x00686270: "D",  # (0068,6270) Information Issue DateTime
    0x006A0003: "D",  # (006A,0003) Annotation Group UID
    0x006A0005: "D",  # (006A,0005) Annotation Group Label
    0x006A0006: "X",  # (006A,0006) Annotation Group Description
    0x00700001: "D",  # (0070,0001) Graphic Annotation Sequence
    0x00700082: "X",  # (0070,0082) Presentation Creation Date
    0x00700083: "X",  # (0070,0083) Presentation Creation Time
    0x00700084: "Z/D",  # (0070,0084) Content Creator's Name
    0x00700086: "X",  # (0070,0086) Content Creator's Identification Code Sequence
    0x0070031A: "U",  # (0070,031A) Fiducial UID
    0x00701101: "U",  # (0070,1101) Presentation Display Collection UID
    0x00701102: "U",  # (0070,1102) Presentation Sequence Collection UID
    0x0072000A: "D",  # (0072,000A) Hanging Protocol Creation DateTime
    0x0072005E: "D",  # (0072,005E) Selector AE Value
    0x0072005F: "D",  # (0072,005F) Selector AS Value
    0x00720061: "D",  # (0072,0061) Selector DA Value
    0x00720063: "D",  # (0072,0063) Selector DT Value
    0x00720065: "D",  # (0072,0065) Selector OB Value
    0x00720066: "D",  # (0072,0066) Selector LO Value
    0x00720068: "D",  # (0072,0068) Selector LT Value
    0x0072006A: "D",  # (0072,006A) Selector PN Value
    0x0072006B: "D",  # (0072,006B) Selector TM Value
    0x0072006C: "D",  # (0072,006C) Selector SH Value
    0x0072006D: "D",  # (0072,006D) Selector UN Value
    0x0072006E: "D",  # (0072,006E) Selector ST Value
    0x00720070: "D",  # (0072,0070) Selector UT Value
    0x00720071: "D",  # (0072,0071) Selector UR Value
    0x00741234: "X",  # (0074,1234) Receiving AE
    0x00741236: "X",  # (0074,1236) Requesting AE
    0x00880140: "U",  # (0088,0140) Storage Media File-set UID
    0x00880200: "X",  # (0088,0200) Icon Image Sequence
    0x00880904: "X",  # (0088,0904) Topic Title
    0x00880906: "X",  # (0088,0906) Topic Subject
    0x00880910: "X",  # (0088,0910) Topic Author
    0x00880912: "X",  # (0088,0912) Topic Keywords
    0x01000420: "X",  # (0100,0420) SOP Authorization DateTime
    0x04000100: "U",  # (0400,0100) Digital Signature UID
    0x04000105: "D",  # (0400,0105) Digital Signature DateTime
    0x04000115: "D",  # (0400,0115) Certificate of Signer
    0x04000310: "X",  # (0400,0310) Certified Timestamp
    0x04000402: "X",  # (0400,0402) Referenced Digital Signature Sequence
    0x04000403: "X",  # (0400,0403) Referenced SOP Instance MAC Sequence
    0x04000404: "X",  # (0400,0404) MAC
    0x04000550: "X",  # (0400,0550) Modified Attributes Sequence
    0x04000551: "X",  # (0400,0551) Nonconforming Modified Attributes Sequence
    0x04000552: "X",  # (0400,0552) Nonconforming Data Element Value
    0x04000561: "X",  # (0400,0561) Original Attributes Sequence
    0x04000562: "D",  # (0400,0562) Attribute Modification DateTime
    0x04000563: "D",  # (0400,0563) Modifying System
    0x04000564: "Z",  # (0400,0564) Source of Previous Values
    0x04000565: "D",  # (0400,0565) Reason for the Attribute Modification
    0x04000600: "X",  # (0400,0600) Instance Origin Status
    0x20300020: "X",  # (2030,0020) Text String
    0x21000040: "X",  # (2100,0040) Creation Date
    0x21000050: "X",  # (2100,0050) Creation Time
    0x21000070: "X",  # (2100,0070) Originator
    0x21000140: "D",  # (2100,0140) Destination AE
    0x22000002: "X/Z",  # (2200,0002) Label Text
    0x22000005: "X/Z",  # (2200,0005) Barcode Value
    0x30020121: "X",  # (3002,0121) Position Acquisition Template Name
    0x30020123: "X",  # (3002,0123) Position Acquisition Template Description
    0x30060002: "D",  # (3006,0002) Structure Set Label
    0x30060004: "X",  # (3006,0004) Structure Set Name
    0x30060006: "X",  # (3006,0006) Structure Set Description
    0x30060008: "Z",  # (3006,0008) Structure Set Date
    0x30060009: "Z",  # (3006,0009) Structure Set Time
    0x30060024: "U",  # (3006,0024) Referenced Frame of Reference UID
    0x30060026: "Z",  # (3006,0026) ROI Name
    0x30060028: "X",  # (3006,0028) ROI Description
    0x30060038: "X",  # (3006,0038) ROI Generation Description
    0x30060085: "X",  # (3006,0085) ROI Observation Label
    0x30060088: "X",  # (3006,0088) ROI Observation Description
    0x300600A6: "Z",  # (3006,00A6) ROI Interpreter
    0x300600C2: "U",  # (3006,00C2) Related Frame of Reference UID
    0x30080024: "D",  # (3008,0024) Treatment Control Point Date
    0x30080025: "D",  # (3008,0025) Treatment Control Point Time
    0x30080054: "X/D",  # (3008,0054) First Treatment Date
    0x30080056: "X/D",  # (3008,0056) Most Recent Treatment Date
    0x30080105: "X/Z",  # (3008,0105) Source Serial Number
    0x30080162: "D",  # (3008,0162) Safe Position Exit Date
    0x30080164: "D",  # (3008,0164) Safe Position Exit Time
    0x30080166: "D",  # (3008,0166) Safe Position Return Date
    0x30080168: "D",  # (3008,0168) Safe Position Return Time
    0x30080250: "X/D",  # (3008,0250) Treatment Date
    0x30080251: "X/D",  # (3008,0251) Treatment Time
    0x300A0002: "D",  # (300A,0002) RT Plan Label
    0x300A0003: "X",  # (300A,0003) RT Plan Name
    0x300A0004: "X",  # (300A,0004) RT Plan Description
    0x300A0006: "X/D",  # (300A,0006) RT Plan Date
    0x300A0007: "X/D",  # (300A,0007) RT Plan Time
    0x300A000B: "X",  # (300A,000B) Treatment Sites
    0x300A000E: "X",  # (300A,000E) Prescription Description
    0x300A0013: "U",  # (300A,0013) Dose Reference UID
    0x300A0016: "X",  # (300A,0016) Dose Reference Description
    0x300A0072: "X",  # (300A,0072) Fraction Group Description
    0x300A0083: "U",  # (300A,0083) Referenced Dose Reference UID
    0x300A00B2: "X/Z",  # (300A,00B2) Treatment Machine Name
    0x300A00C3: "X",  # (300A,00C3) Beam Description
    0x300A00DD: "X",  # (300A,00DD) Bolus Description
    0x300A0196: "X",  # (300A,0196) Fixation Device Description
    0x300A01A6: "X",  # (300A,01A6) Shielding Device Description
    0x300A01B2: "X",  # (300A,01B2) Setup Technique Description
    0x300A0216: "X",  # (300A,0216) Source Manufacturer
    0x300A022C: "D",  # (300A,022C) Source Strength Reference Date
    0x300A022E: "D",  # (300A,022E) Source Strength Reference Time
    0x300A02EB: "X",  # (300A,02EB) Compensator Description
    0x300A0608: "D",  # (300A,0608) Treatment Position Group Label
    0x300A0609: "U",  # (300A,0609) Treatment Position Group UID
    0x300A0611: "Z",  # (300A,0611) RT Accessory Holder Slot ID
    0x300A0615: "Z",  # (300A,0615) RT Accessory Device Slot ID
    0x300A0619: "D",  # (300A,0619) Radiation Dose Identification Label
    0x300A0623: "D",  # (300A,0623) Radiation Dose In-Vivo Measurement Label
    0x300A062A: "D",  # (300A,062A) RT Tolerance Set Label
    0x300A0650: "U",  # (300A,0650) Patient Setup UID
    0x300A0676: "X",  # (300A,0676) Equipment Frame of Reference Description
    0x300A067C: "D",  # (300A,067C) Radiation GenerationMode Label
    0x300A067D: "Z",  # (300A,067D) Radiation GenerationMode Description
    0x300A0700: "U",  # (300A,0700) Treatment Session UID
    0x300A0734: "D",  # (300A,0734) Treatment Tolerance Violation Description
    0x300A0736: "D",  # (300A,0736) Treatment Tolerance Violation DateTime
    0x300A073A: "D",  # (300A,073A) Recorded RT Control Point DateTime
    0x300A0741: "D",  # (300A,0741) Interlock DateTime
    0x300A0742: "D",  # (300A,0742) Interlock Description
    0x300A0760: "D",  # (300A,0760) Override DateTime
    0x300A0783: "D",  # (300A,0783) Interlock Origin Description
    0x300A0785: "U",  # (300A,0785) Referenced Treatment Position Group UID
    0x300A078E: "X",  # (300A,078E) Patient Treatment Preparation Procedure Parameter Description
    0x300A0792: "X",  # (300A,0792) Patient Treatment Preparation Method Description
    0x300A0794: "X",  # (300A,0794) Patient Setup Photo Description
    0x300A079A: "X",  # (300A,079A) Displacement Reference Label
    0x300C0113: "X",  # (300C,0113) Reason for Omission Description
    0x300C0127: "D",  # (300C,0127) Beam Hold Transition DateTime
    0x300E0004: "Z",  # (300E,0004) Review Date
    0x300E0005: "Z",  # (300E,0005) Review Time
    0x300E0008: "X/Z",  # (300E,0008) Reviewer Name
    0x30100006: "U",  # (3010,0006) Conceptual Volume UID
    0x3010000B: "U",  # (3010,000B) Referenced Conceptual Volume UID
    0x3010000F: "Z",  # (3010,000F) Conceptual Volume Combination Description
    0x30100013: "U",  # (3010,0013) Constituent Conceptual Volume UID
    0x30100015: "U",  # (3010,0015) Source Conceptual Volume UID
    0x30100017: "Z",  # (3010,0017) Conceptual Volume Description
    0x3010001B: "Z",  # (3010,001B) Device Alternate Identifier
    0x3010002D: "D",  # (3010,002D) Device Label
    0x30100031: "U",  # (3010,0031) Referenced Fiducials UID
    0x30100033: "D",  # (3010,0033) User Content Label
    0x30100034: "D",  # (3010,0034) User Content Long Label
    0x30100035: "D",  # (3010,0035) Entity Label
    0x30100036: "X",  # (3010,0036) Entity Name
    0x30100037: "X",  # (3010,0037) Entity Description
    0x30100038: "D",  # (3010,0038) Entity Long Label
    0x3010003B: "U",  # (3010,003B) RT Treatment Phase UID
    0x30100043: "Z",  # (3010,0043) Manufacturer's Device Identifier
    0x3010004C: "X/D",  # (3010,004C) Intended Phase Start Date
    0x3010004D: "X/D",  # (3010,004D) Intended Phase End Date
    0x30100054: "D",  # (3010,0054) RT Prescription Label
    0x30100056: "X/D",  # (3010,0056) RT Treatment Approach Label
    0x3010005A: "Z",  # (3010,005A) RT Physician Intent Narrative
    0x3010005C: "Z",  # (3010,005C) Reason for Superseding
    0x30100061: "X",  # (3010,0061) Prior Treatment Dose Description
    0x3010006E: "U",  # (3010,006E) Dosimetric Objective UID
    0x3010006F: "U",  # (3010,006F) Referenced Dosimetric Objective UID
    0x30100077: "X/D",  # (3010,0077) Treatment Site
    0x3010007A: "Z",  # (3010,007A) Treatment Technique Notes
    0x3010007B: "Z",  # (3010,007B) Prescription Notes
    0x3010007F: "Z",  # (3010,007F) Fractionation Notes
    0x30100081: "Z",  # (3010,0081) Prescription Notes Sequence
    0x30100085: "X",  # (3010,0085) Intended Fraction Start Time
    0x40000010: "X",  # (4000,0010) Arbitrary
    0x40004000: "X",  # (4000,4000) Text Comments
    0x40080040: "X",  # (4008,0040) Results ID
    0x40080042: "X",  # (4008,0042) Results ID Issuer
    0x40080100: "X",  # (4008,0100) Interpretation Recorded Date
    0x40080101: "X",  # (4008,0101) Interpretation Recorded Time
    0x40080102: "X",  # (4008,0102) Interpretation Recorder
    0x40080108: "X",  # (4008,0108) Interpretation Transcription Date
    0x40080109: "X",  # (4008,0109) Interpretation Transcription Time
    0x4008010A: "X",  # (4008,010A) Interpretation Transcriber
    0x4008010B: "X",  # (4008,010B) Interpretation Text
    0x4008010C: "X",  # (4008,010C) Interpretation Author
    0x40080111: "X",  # (4008,0111) Interpretation Approver Sequence
    0x40080112: "X",  # (4008,0112) Interpretation Approval Date
    0x40080113: "X",  # (4008,0113) Interpretation Approval Time
    0x40080114: "X",  # (4008,0114) Physician Approving Interpretation
    0x40080115: "X",  # (4008,0115) Interpretation Diagnosis Description
    0x40080118: "X",  # (4008,0118) Results Distribution List Sequence
    0x40080119: "X",  # (4008,0119) Distribution Name
    0x4008011A: "X",  # (4008,011A) Distribution Address
    0x40080200: "X",  # (4008,0200) Interpretation ID
    0x40080202: "X",  # (4008,0202) Interpretation ID Issuer
    0x40080300: "X",  # (4008,0300) Impressions
    0x40084000: "X",  # (4008,4000) Results Comments
    0xFFFAFFFA: "X",  # (FFFA,FFFA) Digital Signatures Sequence
    0xFFFCFFFC: "X",  # (FFFC,FFFC) Data Set Trailing Padding
}
