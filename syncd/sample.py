"""Deterministic generator of realistic service items (政务服务事项).

Why one generator: the demo, the tests and the benchmarks all need believable
items (real department names, valid credit codes, coherent time limits, the
full/half-width phone quirks of DOMAIN.md §3) and must agree on what "item i of
seed s" is. Item i depends only on (seed, i), so ``generate(n)`` is a prefix of
``generate(m)`` for m > n; pools, material lists and conditions are prebuilt so
that 1M items stay cheap (no child rows are created per item).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from hashlib import blake2b

from syncd.model import Fee, Material, ServiceItem, uscc_check_char
from syncd.normalize import phone_key, text_key

#: region code → (place name, telephone area code)
REGIONS = {"450721": ("灵山县", "0777"), "450722": ("浦北县", "0777"), "450702": ("钦南区", "0777"),
           "450703": ("钦北区", "0777"), "450681": ("东兴市", "0770"), "450102": ("兴宁区", "0771")}
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_L = "中华人民共和国"

#: department key → (name after the place name, its laws as (title, number of articles))
DEPTS = {
    "sp": ("行政审批局", ((f"{_L}行政许可法", 83), ("优化营商环境条例", 72), (f"{_L}节约能源法", 87))),
    "sc": ("市场监督管理局", ((f"{_L}食品安全法", 154), ("食品经营许可和备案管理办法", 63),
                             ("促进个体工商户发展条例", 40), (f"{_L}市场主体登记管理条例", 56))),
    "zr": ("自然资源局", ((f"{_L}城乡规划法", 70), (f"{_L}土地管理法", 87),
                          ("不动产登记暂行条例", 35), (f"{_L}森林法", 84))),
    "zj": ("住房和城乡建设局", ((f"{_L}建筑法", 85), ("建设工程质量管理条例", 82), ("城镇燃气管理条例", 53),
                                ("城市道路管理条例", 45), ("城镇排水与污水处理条例", 59))),
    "wj": ("卫生健康局", (("公共场所卫生管理条例", 14), ("医疗机构管理条例", 53),
                          (f"{_L}基本医疗卫生与健康促进法", 110), ("放射诊疗管理规定", 46))),
    "jy": ("教育局", ((f"{_L}民办教育促进法", 67), (f"{_L}义务教育法", 63), (f"{_L}教育法", 86))),
    "rs": ("人力资源和社会保障局", ((f"{_L}社会保险法", 98), (f"{_L}就业促进法", 69),
                                    ("人力资源市场暂行条例", 51), ("失业保险条例", 33))),
    "mz": ("民政局", (("社会救助暂行办法", 70), ("最低生活保障审核确认办法", 42),
                      ("特困人员认定办法", 27), ("婚姻登记条例", 22))),
    "jt": ("交通运输局", ((f"{_L}道路运输条例", 110), (f"{_L}公路法", 87),
                          ("网络预约出租汽车经营服务管理暂行办法", 40))),
    "wl": ("文化广电体育和旅游局", (("全民健身条例", 40), ("娱乐场所管理条例", 58), ("旅行社条例", 68),
                                    ("出版管理条例", 73), (f"{_L}文物保护法", 80))),
    "ny": ("农业农村局", ((f"{_L}种子法", 94), ("兽药管理条例", 75), (f"{_L}动物防疫法", 113))),
    "sl": ("水利局", ((f"{_L}水法", 82), ("取水许可和水资源费征收管理条例", 58))),
    "yj": ("应急管理局", (("危险化学品安全管理条例", 102), ("烟花爆竹安全管理条例", 46))),
    "yb": ("医疗保障局", ((f"{_L}社会保险法", 98), ("医疗保障基金使用监督管理条例", 50))),
}
# "type dept who name": who p = natural persons served, c = enterprises and organisations
_BASES = """01 sc c 食品经营许可证核发|01 zr c 建设工程规划许可证核发|01 wj c 公共场所卫生许可|01 sc c 药品零售企业许可
01 zj c 燃气经营许可证核发|01 zj c 建筑工程施工许可证核发|01 zr p 乡村建设规划许可证核发|01 jt c 道路货物运输经营许可|01 wl c 出版物零售单位设立审批
01 wl c 娱乐场所经营活动审批|01 jy c 民办学校设立审批|01 wj c 医疗机构执业登记|01 zj c 城镇污水排入排水管网许可证核发|01 zj c 城市建筑垃圾处置核准
01 sl c 取水许可|01 zr p 林木采伐许可证核发|01 ny c 农作物种子生产经营许可证核发|01 ny c 兽药经营许可证核发|01 ny c 动物防疫条件合格证核发
01 wj c 供水单位卫生许可|01 wj c 放射诊疗许可|01 sp c 固定资产投资项目节能审查|01 zj c 占用、挖掘城市道路审批|01 zj c 临时占用城市绿地审批
01 zj c 户外广告设施设置审批|01 zj p 砍伐城市树木审批|01 jt c 网络预约出租汽车经营许可|01 wl c 旅行社设立许可|01 rs c 人力资源服务许可
01 rs c 劳务派遣经营许可|01 yj c 危险化学品经营许可|01 yj c 烟花爆竹经营（零售）许可|01 jt p 道路运输从业人员从业资格证核发
20 rs p 城乡居民基本养老保险参保登记|20 rs p 失业登记|20 rs p 就业创业证申领|20 rs p 社会保障卡申领|20 zr p 不动产登记资料查询
20 rs p 流动人员人事档案接收|20 jy p 义务教育阶段学生转学|20 wj p 预防接种服务|20 rs p 个人参保证明查询打印|20 yb p 基本医疗保险关系转移接续
20 rs p 高校毕业生就业报到|20 rs p 创业担保贷款申请|20 rs p 职业技能等级证书查询|20 wl p 公共体育场馆开放服务|20 wl p 公共图书馆借阅服务
20 zj p 农村危房改造申请|20 mz p 婚姻登记预约|20 yb p 城乡居民基本医疗保险参保登记|20 rs c 企业职工基本养老保险参保登记|20 rs c 单位就业登记
20 yb c 职工基本医疗保险参保登记|20 jt p 公交IC卡办理|20 jy p 教师资格认定咨询|20 wj p 出生医学证明办理|20 mz p 殡葬服务
20 sc c 企业信用信息公示|05 rs p 城乡居民基本养老保险待遇发放|05 mz p 最低生活保障金给付|05 mz p 特困人员救助供养金给付|05 mz p 临时救助金给付
05 mz p 高龄津贴发放|05 rs p 失业保险金申领|05 rs p 丧葬补助金、抚恤金申领|05 mz p 困难残疾人生活补贴发放|07 mz p 最低生活保障对象认定
07 mz p 特困人员认定|07 sc c 个体工商户设立登记|07 zr p 不动产首次登记|07 rs p 工伤认定|07 rs p 就业困难人员认定|07 mz c 社会团体成立登记
07 mz c 民办非企业单位成立登记|10 zj c 建设工程竣工验收备案|10 zj c 房屋建筑工程施工图审查备案|10 mz c 民办非企业单位年度检查|10 sc c 食品小作坊登记
10 wl c 全民健身设施拆迁或者改变用途批准|10 ny c 农药经营备案|10 zj c 物业服务企业备案|10 jt c 机动车维修经营备案|06 sc c 对食品生产经营者的监督检查
06 wj c 对公共场所卫生的监督检查|06 yj c 对生产经营单位安全生产的监督检查|06 zj c 对建筑施工现场的监督检查|06 jt c 对道路运输经营者的监督检查
06 rs c 对用人单位遵守劳动保障法律法规情况的检查|06 ny c 对农资经营者的监督检查|06 wl c 对娱乐场所经营活动的监督检查
02 sc c 对未取得食品经营许可从事食品经营活动的行政处罚|02 wl c 对擅自改变全民健身设施用途的行政处罚|02 zj c 对未取得施工许可证擅自施工的行政处罚
02 zj c 对擅自占用、挖掘城市道路的行政处罚|02 wj c 对公共场所未取得卫生许可证经营的行政处罚|02 jt c 对未取得道路运输经营许可擅自经营的行政处罚
02 rs c 对用人单位未按时足额支付劳动报酬的行政处罚|02 yj c 对未取得危险化学品经营许可证经营的行政处罚|02 zr c 对未取得建设工程规划许可证进行建设的行政处罚
02 sl c 对未经批准擅自取水的行政处罚|02 ny c 对经营假、劣种子的行政处罚|02 sc c 对个体工商户未按规定报送年度报告的行政处罚|02 wl c 对娱乐场所超时营业的行政处罚
02 yb c 对定点医药机构骗取医疗保障基金的行政处罚|02 zj c 对随意倾倒建筑垃圾的行政处罚|02 wj c 对医疗机构使用非卫生技术人员的行政处罚
03 sc c 查封、扣押不符合食品安全标准的食品|03 yj c 查封违法储存危险化学品的场所|03 zj c 强制拆除违法建设|04 zj c 城市基础设施配套费征收
04 sl c 水资源费征收|04 zr c 土地复垦费征收|08 mz p 对见义勇为人员的奖励|08 jy p 对优秀教师的表彰奖励|08 rs c 对就业创业工作成绩显著单位的奖励
09 zr p 土地权属争议裁决|09 ny p 林木林地权属争议裁决"""
_QUALIFIERS = {"01": ("", "（新办）", "（变更）", "（延续）", "（注销）", "（补证）"),
               "20": ("", "（个人）", "（单位）", "（变更）"), "05": ("", "（城市）", "（农村）"),
               "07": ("", "（首次认定）", "（复核）"), "10": ("", "（变更）")}
_POOL = tuple((t, d, who, name + q) for line in _BASES.replace("\n", "|").split("|")
              for t, d, who, name in [line.split(" ")] for q in _QUALIFIERS.get(t, ("",)))
# i ↦ i * _STEP mod len(_POOL) is a bijection: each round of len(_POOL) items uses every name once
_STEP = next(a for a in range(len(_POOL) * 5 // 8, len(_POOL) * 2) if math.gcd(a, len(_POOL)) == 1)

# (name, material_type, source, who): certificates the government issued have source 20
_COMMON_MATERIALS = (
    ("居民身份证", "1", "20", "pc"), ("营业执照", "1", "20", "c"), ("授权委托书", "2", "10", "pc"),
    ("法定代表人身份证明", "1", "10", "c"), ("场地平面图", "3", "10", "c"), ("户口簿", "1", "20", "p"),
    ("经营场所使用证明", "1", "10", "c"), ("承诺书", "2", "10", "pc"), ("近期免冠彩色照片", "3", "10", "p"))
_DEPT_MATERIALS = {  # a leading * marks a certificate issued by a government body
    "sc": ("食品安全管理制度文本", "食品安全管理人员名单", "主要设备设施布局图", "经营项目说明"),
    "zj": ("*施工图设计文件审查合格书", "中标通知书", "*建设工程规划许可证", "安全施工措施资料"),
    "zr": ("*不动产权证书", "土地使用权证明", "*建设项目用地预审与选址意见书", "宗地图"),
    "wj": ("卫生检测报告", "从业人员健康合格证明", "卫生管理制度", "放射防护评价报告"),
    "rs": ("*社会保障卡", "劳动合同", "解除或终止劳动关系证明", "银行账户信息"),
    "mz": ("家庭收入情况说明", "家庭财产状况声明", "*残疾人证", "居住证明"),
    "jt": ("*车辆行驶证", "*驾驶员从业资格证", "安全生产管理制度文本", "停车场地证明"),
    "wl": ("消防安全检查合格证明", "改变用途方案", "从业人员名单", "安全应急预案"),
    "sp": ("节能报告", "项目备案证明"), "ny": ("专业技术人员资格证明", "仓储设施证明"),
}
_OFFICE_HOURS = ("工作日上午8:00-12:00，下午15:00-18:00", "工作日上午8:00-12:00，下午14:30-17:30",
                 "周一至周五上午8:00—12:00，下午15:00—18:00（法定节假日除外）",
                 "工作日8:30-12:00，14:30-17:30", "周一至周五上午8:00-12:00，下午3:00-6:00",
                 "工作日上午8:00-12:00，下午15:00-18:00；周六上午9:00-12:00（延时服务）")
_CONDITIONS = {"c": ("申请人已依法取得营业执照等主体资格", "具有与经营项目相适应的场所和设施设备",
                     "具有健全的安全管理制度和岗位责任制度", "从业人员经培训合格并持有有效健康证明",
                     "符合国家和自治区有关产业政策", "申请材料齐全、符合法定形式"),
               "p": ("申请人具有完全民事行为能力", "申请人持有本县户籍或居住证", "申请材料齐全、符合法定形式",
                     "家庭人均收入低于当地最低生活保障标准", "已按规定参加社会保险并足额缴费")}
_PROCESS = ("申请→受理→审查→决定→送达", "申请→受理→审查→现场核查→决定→送达",
            "1.申请：申请人通过窗口或网上提交材料；2.受理：窗口核验材料并作出是否受理决定；"
            "3.审查：承办股室审查材料；4.决定：作出准予或不予决定；5.送达：窗口领取或邮寄送达。")
_PROCESS_INSTANT = ("申请→受理→审核→办结（当场出件）", "申请→受理→办结")
_PROCESS_ENFORCE = "立案→调查取证→审查→告知→决定→送达→执行"
_VISIT_REASONS = ("需现场核验原件", "需现场勘查", "需本人现场签字确认", "需现场采集人像信息", "需现场领取证照")
_FEES = tuple(Fee(*f) for f in (
    ("不动产登记费", "住宅类每件80元，非住宅类每件550元",
     "《国家发展改革委 财政部关于不动产登记收费标准等有关问题的通知》（发改价格规〔2016〕2559号）"),
    ("证书工本费", "按《广西壮族自治区行政事业性收费目录清单》规定标准收取", "《行政事业性收费项目目录》"),
    ("城市道路占用费", "按《广西壮族自治区城市道路占用费收费标准》规定标准收取", "《城市道路管理条例》第三十七条"),
    ("水资源费", "按自治区价格主管部门核定的标准收取", "《取水许可和水资源费征收管理条例》第二十八条"),
    ("特种设备检验检测费", "按《广西壮族自治区特种设备检验检测收费标准》规定标准收取", "《行政事业性收费项目目录》")))
_DEPT_FEE = {"zr": 0, "zj": 2, "sl": 3, "sc": 4}  # index into _FEES; other departments: 证书工本费
_OBJECTS = {"p": (("1",), ("1",), ("1", "2")),
            "c": (("2",), ("2", "5"), ("1", "2", "5"), ("2", "3", "4"))}
_MODES = (("1",), ("1", "2"), ("1", "2"), ("1", "2"), ("1", "2", "3"), ("1", "2", "3"))
_LEGAL_DAYS = (5, 7, 10, 15, 20, 20, 30, 60)
_UNIT_TEXT = {"1": "工作日", "2": "自然日"}
_DIGIT_CN = "零一二三四五六七八九"


def _cn(n: int) -> str:
    """Article numbers as law citations write them: 12 → 十二, 105 → 一百零五."""
    if n < 10:
        return _DIGIT_CN[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else _DIGIT_CN[tens]) + "十" + (_DIGIT_CN[ones] if ones else "")
    hundreds, rest = divmod(n, 100)
    tail = ("" if rest == 0 else "零" + _DIGIT_CN[rest] if rest < 10
            else "一" * (rest < 20) + _cn(rest))
    return _DIGIT_CN[hundreds] + "百" + tail


@lru_cache(maxsize=16)
def _departments(region_code: str) -> dict[str, tuple[str, str, str, str]]:
    """dept key → (name, USCC, consult phone, complaint phone) for one region."""
    if region_code not in REGIONS:
        raise ValueError(f"unknown region_code {region_code!r}; known: {sorted(REGIONS)}")
    place, area = REGIONS[region_code]
    out = {}
    for key, (suffix, _laws) in DEPTS.items():
        rng = random.Random(f"{region_code}:{key}")
        tail = ("MB" + "".join(rng.choices("0123456789", k=7)) if rng.random() < 0.5
                else "".join(rng.choices(_USCC_CHARS, k=9)))
        base = "11" + region_code + tail  # 11 = 机关, then the region, then the body's own code
        number = rng.randrange(6420000, 6499990)
        out[key] = (place + suffix, base + uscc_check_char(base), f"{area}-{number}",
                    f"{area}-{number + 7}")
    return out


# Every citation of a sector's laws; permits (01) may also cite the 行政许可法.
_CITES = {(d, permit): tuple(f"《{title}》第{_cn(n)}条" for title, arts in
                             laws + DEPTS["sp"][1][:1] * permit for n in range(1, arts + 1))
          for d, (_suffix, laws) in DEPTS.items() for permit in (False, True)}


def _kit(rng: random.Random, dept: str, who: str) -> tuple[Material, ...]:
    """One material list: 1–6 rows, 申请表 first in 80 %, most rows citing a law."""
    cites = _CITES[dept, False]
    pool = [(n, t, s) for n, t, s, w in _COMMON_MATERIALS if who in w]
    pool += [(m[1:], "1", "20") if m[0] == "*" else (m, "3", "10")
             for m in _DEPT_MATERIALS.get(dept, ())]
    total = rng.randint(1, 6)
    rows = [("申请表", "2", "10")] if rng.random() < 0.8 else []
    rows += rng.sample(pool, min(len(pool), total - len(rows)))
    return tuple(Material(name, mtype, rng.choice("1123"), rng.choice((1, 1, 2)),
                          "1" if rng.random() < 0.8 else rng.choice("23"), source,
                          rng.choice(cites) if rng.random() < 0.85 else None, n)
                 for n, (name, mtype, source) in enumerate(rows, 1))


def _clauses(rng: random.Random, pool: tuple[str, ...]) -> str:
    """受理条件 as guides write them: "1.…；\\n2.…。"."""
    picked = rng.sample(pool, rng.randint(1, 3))
    return "\n".join(f"{n}.{c}{'。' if n == len(picked) else '；'}" for n, c in enumerate(picked, 1))


# Material lists and conditions are 64 fixed kits per sector: items share immutable rows.
_KIT_RNG = random.Random("syncd.sample")
_KITS = {(d, who): tuple(_kit(_KIT_RNG, d, who) for _ in range(64)) for d in DEPTS for who in "pc"}
_CONDITION_TEXTS = {who: tuple(_clauses(_KIT_RNG, pool) for _ in range(64))
                    for who, pool in _CONDITIONS.items()}


def _make(i: int, seed: int, region_code: str) -> ServiceItem:
    # Randomness is the 64 bytes of a hash of (seed, i), one byte (0–255) per draw; an
    # item draws at most ~35. Seeding a Mersenne Twister per item costs more than the item.
    b = iter(blake2b(f"{seed}:{i}".encode()).digest()).__next__

    def pick(seq):
        return seq[b() * len(seq) >> 8]

    def cite() -> str:
        return cites[(b() << 8 | b()) * len(cites) >> 16]

    def phone(number: str) -> str:  # 8 % em dash, 6 % full-width digits, as real data has
        r = b()
        return (number.replace("-", "—") if r < 0.08 * 256
                else number.translate(_FULL_WIDTH) if r < 0.14 * 256 else number)

    rounds, k = divmod(i, len(_POOL))
    item_type, sector, who, name = _POOL[(k * _STEP + seed * 7919) % len(_POOL)]
    if rounds:
        name += f"（业务办理项{rounds:02d}）"
    # 相对集中许可: many permits moved to the 行政审批局, still citing the sector's laws
    dept_name, uscc, consult, complaint = _departments(region_code)[
        "sp" if item_type == "01" and b() < 0.4 * 256 else sector]
    cites = _CITES[sector, item_type == "01"]
    level = "3" if b() < 0.15 * 256 else "4"
    catalog = f"{i + 1:09d}000"
    code = uscc + level + catalog
    instant = item_type in ("20", "05", "07") and b() < 0.45 * 256
    unit = "2" if b() < 0.1 * 256 else "1"
    legal = pick(_LEGAL_DAYS)
    promised = int(b() < 0.6 * 256) if instant else max(1, legal * (38 + b()) // 640)  # 6–46 %
    modes = pick(_MODES)
    depth = pick("234") if "2" in modes else None
    visits = 0 if depth == "4" or (depth == "3" and b() < 128) else 1
    charged = item_type in ("01", "04", "07") and b() < 0.15 * 256
    fees: tuple[Fee, ...] = ()
    if charged:
        fees = (_FEES[_DEPT_FEE.get(sector, 1)],)
        if sector in _DEPT_FEE and b() < 0.3 * 256:
            fees += (_FEES[1],)
    basis, second = cite(), cite()
    if b() < 0.3 * 256 and second != basis:
        basis += "；" + second
    return ServiceItem(
        item_code=code, item_name=name, item_type=item_type, dept_name=dept_name,
        status="2" if b() < 0.03 * 256 else "1", catalog_code=catalog, dept_code=uscc,
        region_code=region_code, exercise_level=level, service_objects=pick(_OBJECTS[who]),
        handle_type="1" if instant else "2", legal_time_limit=legal, legal_limit_unit=unit,
        legal_limit_note=f"{legal}个{_UNIT_TEXT[unit]}", promised_time_limit=promised,
        promised_limit_unit=unit, promised_limit_note=f"{promised}个{_UNIT_TEXT[unit]}",
        visit_count=visits, visit_reason=pick(_VISIT_REASONS) if visits else None,
        handle_modes=modes,
        online_url=f"https://zwfw.gxzf.gov.cn/eportal/bszn/{code}" if depth else None,
        online_depth=depth, charged=charged, conditions=pick(_CONDITION_TEXTS[who]),
        process=(_PROCESS_ENFORCE if item_type in ("02", "03") else
                 pick(_PROCESS_INSTANT) if instant else pick(_PROCESS)),
        address=f"{REGIONS[region_code][0]}政务服务中心{pick('一二三')}楼{1 + b() * 40 // 256}号窗口",
        office_hours=pick(_OFFICE_HOURS), consult_phone=phone(consult),
        complaint_phone="12345" if b() < 0.1 * 256 else phone(complaint), legal_basis=basis,
        version=1 + b() * 5 // 256,
        updated_at=_EPOCH + timedelta(seconds=(b() << 16 | b() << 8 | b()) * (365 * 86400) >> 24),
        materials=pick(_KITS[sector, who]), fees=fees)


def generate(n: int, *, seed: int = 0, region_code: str = "450721") -> Iterator[ServiceItem]:
    """Yield ``n`` distinct valid items; item i depends only on (seed, i, region_code).

    Item codes are unique (the catalog code is derived from i); names are unique
    too: after every name is used once, later rounds add （业务办理项NN）.
    """
    _departments(region_code)  # fail fast on an unknown region
    for i in range(n):
        yield _make(i, seed, region_code)


def edit(item: ServiceItem, k: int) -> ServiceItem:
    """A deterministic, meaningful change (new content hash); version + 1, updated_at + k + 1 s.

    ``k % 4`` picks it: 0 office hours, 1 an appended material, 2 the promised
    limit (note kept in step, never above the legal limit; falls back to 0 when
    it cannot move), 3 the consult phone.
    """
    change: dict = {}
    kind = k % 4
    promised, legal = item.promised_time_limit, item.legal_time_limit
    if kind == 2 and promised is not None and legal is not None:
        down = promised > 1 or (promised == 1 and item.handle_type == "1")  # 即办件 stays 0–1
        new = promised - 1 if down else min(promised + 1, legal)
        unit = item.promised_limit_unit or "1"
        if new != promised:
            change.update(promised_time_limit=new, promised_limit_unit=unit,
                          promised_limit_note=f"{new}个{_UNIT_TEXT.get(unit, '工作日')}")
    if kind == 0 or (kind == 2 and not change):
        keys = [text_key(h) for h in _OFFICE_HOURS]
        now = text_key(item.office_hours)
        cur = keys.index(now) if now in keys else -1
        change["office_hours"] = _OFFICE_HOURS[(cur + 1 + k % (len(keys) - 1)) % len(keys)]
    elif kind == 1:
        names = {text_key(m.name) for m in item.materials}
        extra = [m.lstrip("*") for ms in _DEPT_MATERIALS.values() for m in ms]
        fresh = [m for m in extra if text_key(m) not in names] or [f"补充材料{k}"]
        change["materials"] = item.materials + (Material(
            fresh[k % len(fresh)], "3", "1", 1, "2", "10", f"《{_L}行政许可法》第三十一条",
            len(item.materials) + 1),)
    elif kind == 3:
        digits = phone_key(item.consult_phone).replace("-", "")
        area = digits[:4] if digits.startswith("0") and len(digits) >= 10 else "0777"
        number = 6420000 + (k * 7919 + 37) % 80000
        if phone_key(f"{area}-{number}") == phone_key(item.consult_phone):
            number += 1
        change["consult_phone"] = f"{area}-{number}"
    when = (item.updated_at or _EPOCH) + timedelta(seconds=k + 1)
    return dataclasses.replace(item, **change, version=(item.version or 0) + 1, updated_at=when)
